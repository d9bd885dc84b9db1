// The unit's payment page: poll the payment's status and reload once it is no longer pending,
// so the page shows the outcome (paid, or closed) as the server renders it.
(function() {
    var page = $('#pay-payment');
    if (!page.length || page.data('status') !== 'pending') { return; }
    function poll() {
        $.getJSON(page.data('status-url'), function(state) {
            if (state.status !== 'pending' || state.order_status !== 'pending') {
                window.location.reload();
            } else {
                setTimeout(poll, 2000);
            }
        }).fail(function() { setTimeout(poll, 5000); });
    }
    setTimeout(poll, 2000);
})();
