// Searching selects (SearchingSelectWidget, app/security_manager.py; FilterChoicesWidget,
// app/views/filter_choices.py): the page holds only the chosen row; opening or typing asks the
// server for one page of matches, scrolling down for the next.
$(function() {
    function searching(select) {
        // A search filter keeps its "(none)" choice, as FAB's drop-downs do: nothing to clear.
        var filter = select.hasClass('ciie-filter-choices');
        select.select2({
            theme: 'bootstrap', allowClear: !filter, width: '100%',
            placeholder: filter ? select.data('placeholder') : {id: '', text: ''},
            ajax: {
                url: select.data('endpoint'), dataType: 'json', delay: 250,
                // select2 counts pages from 1, the server from 0.
                data: function(params) { return {q: params.term || '', page: (params.page || 1) - 1}; }
            }
        });
    }
    $('select.ciie-select-search').each(function() { searching($(this)); });
    // FAB's search form inserts a filter's field when the user adds the filter (its own
    // click handler, bound before this one, has just run).
    $('#filter_form a.filter').on('click', function() {
        $('#filter_form select.ciie-select-search').not('.select2-hidden-accessible')
            .each(function() { searching($(this)); });
    });
});
