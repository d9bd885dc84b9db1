// The searching select boxes (select2) speak the page's language: set before FAB's ab.js
// builds them when the document is ready.
(function() {
    var t = window.CIIE_I18N || {};
    if (window.jQuery && $.fn.select2 && $.fn.select2.defaults) {
        $.fn.select2.defaults.set('language', {
            removeAllItems: function() { return t.select_remove_all; },
            noResults: function() { return t.select_no_results; },
            searching: function() { return t.select_searching; },
            errorLoading: function() { return t.select_error_loading; },
            loadingMore: function() { return t.select_loading_more; }
        });
    }
})();

// Batch actions for CIIE lists: the ticked rows, or every row matching the filter, with a
// confirmation that shows how many rows the action will change (and, for every matching row,
// how many it will skip and why: the list's /count?action= answers).
// reasonActions: {action: {prompt, required}}, the dialog asking for each action's reason.
function CiieActions(reasonActions) {
    var base = new AdminActions();
    var t = window.CIIE_I18N || {};
    function fmt(text, count) { return (text || "").replace("%(count)s", count); }
    if ($.isArray(reasonActions)) {
        var named = {};
        $.each(reasonActions, function(_i, name) { named[name] = {}; });
        reasonActions = named;
    }
    reasonActions = reasonActions || {};

    // A dialog asking for the reason; an empty one is refused there, naming the field.
    function askReason(spec, then) {
        var modal = $('#ciie-reason-modal');
        if (!modal.length) {
            modal = $('<div class="modal fade" id="ciie-reason-modal" tabindex="-1" role="dialog">' +
                '<div class="modal-dialog" role="document"><div class="modal-content">' +
                '<div class="modal-body"><div class="form-group">' +
                '<label class="control-label" for="ciie-reason-text" id="ciie-reason-label"></label>' +
                '<textarea class="form-control" id="ciie-reason-text" rows="3"></textarea>' +
                '<span class="help-block hidden" id="ciie-reason-error"></span></div></div>' +
                '<div class="modal-footer">' +
                '<button type="button" class="btn btn-default" data-dismiss="modal" id="ciie-reason-cancel"></button>' +
                '<button type="button" class="btn btn-primary" id="ciie-reason-ok"></button>' +
                '</div></div></div></div>').appendTo('body');
            $('#ciie-reason-cancel').text(t.cancel || 'Cancel');
            $('#ciie-reason-ok').text(t.ok || 'OK');
        }
        $('#ciie-reason-label').text(spec.prompt || t.reason_prompt);
        $('#ciie-reason-text').val('');
        $('#ciie-reason-error').addClass('hidden').text('');
        $('.form-group', modal).removeClass('has-error');
        $('#ciie-reason-ok').off('click').on('click', function() {
            var reason = $.trim($('#ciie-reason-text').val());
            if (!reason) {
                $('#ciie-reason-error').text(spec.required || t.reason_required).removeClass('hidden');
                $('.form-group', modal).addClass('has-error');
                $('#ciie-reason-text').trigger('focus');
                return;
            }
            modal.modal('hide');
            then(reason);
        });
        modal.modal('show');
    }

    this.execute_multiple = function(name, confirmation) {
        var box = $('#all-matching');
        if (box.is(':checked')) {
            // Every matching row: ask how many of them this action can change, and which it
            // will skip (read-only, or in a status it cannot leave).
            var url = box.data('count-url');
            url += (url.indexOf('?') < 0 ? '?' : '&') + 'action=' + encodeURIComponent(name);
            $.getJSON(url, function(answer) {
                if (!answer.actionable) { ab_alert(answer.nothing_text); return; }
                confirmAndRun(name, confirmation, true, answer.actionable, answer.confirm_text);
            }).fail(function() { ab_alert(t.count_failed); });
            return false;
        }
        return confirmAndRun(name, confirmation, false, $('input.action_check:checked').length, '');
    };

    function confirmAndRun(name, confirmation, all, count, summary) {
        if (!all && count === 0) { ab_alert(t.no_rows); return false; }
        if (reasonActions.hasOwnProperty(name)) {
            askReason(reasonActions[name], function(reason) {
                submit(name, confirmation, all, count, reason, summary);
            });
            return false;
        }
        return submit(name, confirmation, all, count, '', summary);
    }

    function submit(name, confirmation, all, count, reason, summary) {
        var form = $('#action_form');
        // With rows skipped, the server's sentence says how many of how many, and why.
        var message = summary || fmt(all ? t.confirm_all : t.confirm_some, count);
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
