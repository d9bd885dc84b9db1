// Unit information autosave: every 5 seconds, if anything changed, the form is sent as a draft
// (valid or not) and the page says when it was saved; leaving the page sends it once more.
(function() {
    var form = $('#unit-info-form');
    if (!form.length || form.data('editable') !== 1) { return; }
    var t = window.CIIE_I18N || {};
    var url = form.data('draft-url');
    var token = $('input[name=csrf_token]', form).val();
    var status = $('#autosave-status');

    function snapshot() {
        var data = {zones: []};
        form.find('input[name], textarea[name]').each(function() {
            var el = $(this), name = el.attr('name');
            if (name === 'csrf_token') { return; }
            if (name === 'zones') { if (el.is(':checked')) { data.zones.push(el.val()); } }
            else { data[name] = el.val(); }
        });
        return JSON.stringify(data);
    }
    var last = snapshot();
    var saving = false;

    function save() {
        var current = snapshot();
        if (current === last || saving) { return; }
        saving = true;
        $.ajax({url: url, method: 'POST', data: current, contentType: 'application/json',
                headers: {'X-CSRFToken': token}})
            .done(function(reply) {
                last = current;
                status.text((t.saved_at || '%(time)s').replace('%(time)s', reply.saved_at))
                      .removeClass('text-danger').addClass('text-success');
            })
            .fail(function() { status.text(t.save_failed).addClass('text-danger'); })
            .always(function() { saving = false; });
    }
    setInterval(save, 5000);
    // Saving the form itself must not be followed by a stale draft from the page unloading.
    var submitting = false;
    form.on('submit', function() { submitting = true; });
    window.addEventListener('pagehide', function() {
        var current = snapshot();
        if (!submitting && current !== last && navigator.sendBeacon) {
            var body = new FormData();
            body.append('csrf_token', token);
            body.append('payload', current);
            navigator.sendBeacon(url, body);
        }
    });
})();
