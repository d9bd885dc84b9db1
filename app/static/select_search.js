// Searching selects (SearchingSelectWidget, app/security_manager.py): the page holds only the
// chosen row; typing asks the server for one page of matches, scrolling down for the next.
$(function() {
    $('select.ciie-select-search').each(function() {
        var select = $(this);
        select.select2({
            theme: 'bootstrap', allowClear: true, placeholder: {id: '', text: ''}, width: '100%',
            ajax: {
                url: select.data('endpoint'), dataType: 'json', delay: 250,
                // select2 counts pages from 1, the server from 0.
                data: function(params) { return {q: params.term || '', page: (params.page || 1) - 1}; }
            }
        });
    });
});
