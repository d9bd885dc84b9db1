// Follow a background task: poll its status and move the bar; when it has ended, load the
// page again, which then shows its report (ciie/task.html renders it).
(function() {
    var page = $('#task-page');
    var t = window.CIIE_TASK_TEXT;
    function show(state) {
        $('#task-status').text(state.label);
        $('#task-progress').css('width', state.percent + '%').text(state.percent + '%');
        $('#task-counts').text(t.of.replace('%(done)s', state.processed).replace('%(total)s', state.total));
        $('#task-waiting').remove();
        if (state.status === 'queued') {
            $('#task-report').append($('<p class="text-muted" id="task-waiting">').text(t.queued));
        }
        return state.status === 'done' || state.status === 'failed';
    }
    function poll() {
        $.getJSON(page.data('status-url'), function(state) {
            if (show(state)) { window.location.reload(); } else { setTimeout(poll, 1000); }
        });
    }
    poll();
})();
