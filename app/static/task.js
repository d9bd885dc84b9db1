// Follow a background task: poll its status, move the bar, then show the report or the file.
(function() {
    var page = $('#task-page');
    var t = window.CIIE_TASK_TEXT;
    function show(state) {
        $('#task-status').text(state.label);
        $('#task-progress').css('width', state.percent + '%').text(state.percent + '%');
        $('#task-counts').text(t.of.replace('%(done)s', state.processed).replace('%(total)s', state.total));
        var report = $('#task-report').empty();
        if (state.status === 'queued') {
            report.append($('<p class="text-muted" id="task-waiting">').text(t.queued));
        }
        if (state.status !== 'done' && state.status !== 'failed') { return false; }
        $('#task-progress').removeClass('active');
        var result = state.result || {};
        if (state.status === 'failed') {
            var why = result.stalled ? t.stalled : t.failed + ' ' + (result.error || '');
            report.append($('<div class="alert alert-danger" id="task-failed">').text(why));
            $('#task-run-again').show();
        }
        if (result.done !== undefined) {
            report.append($('<div class="alert alert-success" id="task-done">').text(t.done.replace('%(count)s', result.done)));
        }
        if (result.refused && result.refused.length) {
            var box = $('<div class="alert alert-warning" id="task-refused">').text(t.refused.replace('%(count)s', result.refused.length));
            var list = $('<ul>');
            result.refused.forEach(function(r) { list.append($('<li>').text(r.label + ': ' + r.reason)); });
            report.append(box.append(list));
        }
        (result.notes || []).forEach(function(note) {
            report.append($('<p class="task-note">').text(note));
        });
        if (state.has_file) {
            report.append($('<a class="btn btn-primary" id="task-file">').attr('href', page.data('file-url')).text(t.download));
        }
        return true;
    }
    function poll() {
        $.getJSON(page.data('status-url'), function(state) {
            if (!show(state)) { setTimeout(poll, 1000); }
        });
    }
    poll();
})();
