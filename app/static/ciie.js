// Batch actions for CIIE lists: the ticked rows, or every row matching the filter, with a
// confirmation that shows how many rows the action will touch.
function CiieActions(reasonActions) {
    var base = new AdminActions();
    var t = window.CIIE_I18N || {};
    function fmt(text, count) { return (text || "").replace("%(count)s", count); }

    this.execute_multiple = function(name, confirmation) {
        var box = $('#all-matching');
        var all = box.is(':checked');
        if (all && box.data('count') === '') {
            // A large list counted only up to its limit: ask for the exact number first.
            $.getJSON(box.data('count-url'), function(answer) {
                box.data('count', answer.count);
                confirmAndRun(name, confirmation, true);
            });
            return false;
        }
        return confirmAndRun(name, confirmation, all);
    };

    function confirmAndRun(name, confirmation, all) {
        var form = $('#action_form');
        var count = all ? parseInt($('#all-matching').data('count'), 10)
                        : $('input.action_check:checked').length;
        if (!all && count === 0) { ab_alert(t.no_rows); return false; }
        var reason = '';
        if ((reasonActions || []).indexOf(name) >= 0) {
            reason = window.prompt(t.reason_prompt);
            if (!reason || !reason.trim()) { return false; }
        }
        var message = fmt(all ? t.confirm_all : t.confirm_some, count);
        if (confirmation) { message = confirmation + "\n" + message; }
        if (!window.confirm(message)) { return false; }
        $('input[name=action]', form).val(name);
        $('input[name=all_matching]', form).val(all ? '1' : '');
        $('input[name=reason]', form).val(reason);
        $('input.action_check', form).remove();
        if (!all) {
            $('input.action_check:checked').each(function() { form.append($(this).clone()); });
        }
        form.trigger('submit');
        return false;
    }
    this.execute_single = base.execute_single;
    this.execute_single_delete = base.execute_single_delete;
}

// Logout is a POST with the CSRF token: the user menu's entry submits the hidden form.
$(function() {
    $('#logout').on('click', function(event) {
        event.preventDefault();
        $('#logout-form').trigger('submit');
    });
});
