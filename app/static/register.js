// Registration form: categories and delegations follow the chosen region, sub-delegations
// follow the chosen delegation.
(function() {
    var cfg = window.CIIE_REGISTER;
    var region = $('#region'), category = $('#category');
    var delegation = $('#delegation'), sub = $('#sub_delegation');

    function fill(select, options, keep) {
        var current = keep ? select.val() : '';
        select.empty().append($('<option>').val('').text(cfg.choose));
        options.forEach(function(o) { select.append($('<option>').val(o[0]).text(o[1])); });
        if (current && select.find('option[value="' + current + '"]').length) { select.val(current); }
    }
    function loadDelegations(keep) {
        $.getJSON(cfg.delegationsUrl, {region: region.val()}, function(rows) {
            fill(delegation, rows, keep);
            loadSubs(keep);
        });
    }
    function loadSubs(keep) {
        if (!delegation.val()) { fill(sub, [], false); return; }
        $.getJSON(cfg.delegationsUrl, {parent: delegation.val()}, function(rows) {
            fill(sub, rows, keep);
        });
    }
    region.on('change', function() {
        fill(category, cfg.categories[region.val()] || [], true);
        loadDelegations(true);
    });
    delegation.on('change', function() { loadSubs(false); });
    fill(category, cfg.categories[region.val()] || [], true);
    loadDelegations(true);
})();
