// Date-time boxes (ShanghaiDateTimePickerWidget, app/views/base.py): a Beijing time typed as
// "YYYY-MM-DD HH:MM", or picked. The box itself is left alone, so what is typed stays: FAB binds
// its date-only picker to the box, which rewrote "2022-10-08 23:59" to a bare date. Here the
// calendar (FAB's bootstrap-datepicker) opens from the button beside the box, with an hour and
// a minute below it, in the page's language; picking a day keeps the time already there.
(function($) {
    if (!$ || !$.fn.datepicker) { return; }

    function two(n) { return (n < 10 ? '0' : '') + n; }

    // "2022-10-08 23:59" (or with seconds, or "/") → {date: "2022-10-08", time: "23:59"}.
    function parts(text) {
        var match = /^\s*(\d{4})[-\/](\d{1,2})[-\/](\d{1,2})(?:\s+(\d{1,2}):(\d{2})(:\d{2})?)?\s*$/
            .exec(text || '');
        if (!match) { return null; }
        return {
            date: match[1] + '-' + two(+match[2]) + '-' + two(+match[3]),
            time: match[4] === undefined ? null
                : two(+match[4]) + ':' + match[5] + (match[6] || '')
        };
    }

    function options(count, step) {
        var html = '';
        for (var i = 0; i < count; i += step) {
            html += '<option value="' + two(i) + '">' + two(i) + '</option>';
        }
        return html;
    }

    function setUp(group) {
        var locale = group.data('ciie-datetime') || {};
        var input = group.find('input');
        var button = group.find('.ciie-datetime-open');
        var lang = 'ciie-' + (locale.code || 'en');
        $.fn.datepicker.dates[lang] = locale;
        button.datepicker({
            format: 'yyyy-mm-dd', language: lang, weekStart: locale.weekStart || 0,
            defaultViewDate: locale.opensOn, orientation: 'bottom left', autoclose: false,
            // Attached to the button (no input, no "date" component), it would draw inline.
            isInline: false
        });
        var picker = button.data('datepicker').picker;
        var clock = $('<div class="ciie-datetime-time form-inline">' +
            '<label class="control-label"></label> ' +
            '<select class="form-control input-sm ciie-hour">' + options(24, 1) + '</select> : ' +
            '<select class="form-control input-sm ciie-minute">' + options(60, 1) + '</select>' +
            '</div>');
        clock.find('label').text(locale.time || '');
        // The calendar takes every click inside it for its own (and swallows it).
        clock.on('click mousedown', function(event) { event.stopPropagation(); });
        picker.append(clock);

        function write(date, time) {
            input.val(date + ' ' + time).trigger('change');
        }

        button.on('show', function() {
            var now = parts(input.val());
            if (now) { button.datepicker('update', now.date); }
            var time = (now && now.time) || '00:00';
            clock.find('.ciie-hour').val(time.slice(0, 2));
            clock.find('.ciie-minute').val(time.slice(3, 5));
        });
        button.on('changeDate', function(event) {
            var now = parts(input.val());
            var time = (now && now.time) ||
                clock.find('.ciie-hour').val() + ':' + clock.find('.ciie-minute').val();
            write(event.format('yyyy-mm-dd'), time);
        });
        clock.find('select').on('change', function() {
            var now = parts(input.val());
            var date = now ? now.date : button.datepicker('getFormattedDate');
            if (!date) { return; }
            write(date, clock.find('.ciie-hour').val() + ':' + clock.find('.ciie-minute').val());
        });
    }

    // FAB's date-only pickers (an edition's first and last day, date filters) speak the page's
    // language too: defaults set now, before FAB builds them when the page is ready.
    // Every page carries them (CIIE_CALENDAR), so date-only fields and filters are not in
    // English on a Chinese page.
    var first = window.CIIE_CALENDAR ||
        $('.ciie-datetime[data-ciie-datetime]').first().data('ciie-datetime');
    if (first) {
        $.fn.datepicker.dates['ciie-' + first.code] = first;
        $.fn.datepicker.defaults.language = 'ciie-' + first.code;
        $.fn.datepicker.defaults.weekStart = first.weekStart || 0;
    }

    $(function() {
        $('.ciie-datetime[data-ciie-datetime]').each(function() { setUp($(this)); });
    });
})(window.jQuery);
