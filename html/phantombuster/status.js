/*
 * The queue status page: polls the status JSON (phantombuster_status)
 * every 2 s and renders it; the buttons POST commands to the admin
 * location (phantombuster_admin), which hands them to pb-worker, then
 * poll the admin location for the worker's answer.  Every value from the
 * JSON goes into the page as text, never as HTML.
 */
'use strict';

(function () {
    var POLL_MS = 2000;
    var RESULT_POLL_MS = 500;
    var RESULT_WAIT_MS = 15000;

    var params = new URLSearchParams(location.search);
    var statusUrl = params.get('status') || document.body.dataset.statusUrl;
    var adminUrl = params.get('admin') || document.body.dataset.adminUrl;

    var TITLES = { stuck_run: 'Stuck run.', no_worker: 'No worker.',
                   paused: 'Paused.', draining: 'Draining.',
                   dead_letters: 'Dead letters.',
                   audit_rejected: 'Audit log.' };

    var last = null;          /* the last status we rendered */
    var lastAt = 0;           /* when it arrived (local clock) */
    var problem = null;       /* why the last poll failed, or null */

    function $(id) { return document.getElementById(id); }

    function el(tag, attrs, children) {
        var e = document.createElement(tag);
        Object.keys(attrs || {}).forEach(function (k) {
            if (k === 'text') {
                e.textContent = attrs[k];
            } else if (k === 'className') {
                e.className = attrs[k];
            } else {
                e.setAttribute(k, attrs[k]);
            }
        });
        (children || []).forEach(function (c) { e.appendChild(c); });
        return e;
    }

    function td(text, className) {
        return el('td', { text: text == null ? '–' : String(text),
                          className: className || '' });
    }

    function duration(ms) {
        if (ms == null) { return '–'; }
        var s = Math.round(ms / 1000);
        if (s < 60) { return s + ' s'; }
        var m = Math.floor(s / 60);
        if (m < 60) { return m + ' min ' + (s % 60) + ' s'; }
        return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
    }

    function clock(ms) {
        return ms == null ? '–' : new Date(ms).toLocaleTimeString();
    }

    function fill(table, rows, empty, render) {
        var body = $(table).tBodies[0];
        var cols = $(table).tHead.rows[0].cells.length;
        body.textContent = '';
        if (rows.length === 0) {
            body.appendChild(el('tr', {}, [el('td', {
                text: empty, className: 'empty', colspan: cols })]));
            return;
        }
        rows.forEach(function (r) { body.appendChild(render(r)); });
    }

    function banner(level, title, text) {
        $('banners').appendChild(el('div', { className: 'banner ' + level },
            [el('strong', { text: title }), document.createTextNode(text)]));
    }

    function renderBanners(s) {
        $('banners').textContent = '';

        if (problem) {
            banner('error', problem.title, problem.text);
        }

        if (!s) { return; }

        if (s.lane.state === 'closed') {
            /* closed_ms was measured when the status arrived */
            var until = lastAt + s.lane.closed_ms;
            banner('warning', 'Lane paused by PhantomBuster (429).',
                   'No launch until ' + clock(until) + ' (in '
                   + duration(Math.max(0, until - Date.now()))
                   + '); jobs keep their place.');
        }

        s.alerts.forEach(function (a) {
            if (a.code === 'lane_closed') { return; }
            banner(a.level === 'error' ? 'error' : 'warning',
                   TITLES[a.code] || 'Note.', ' ' + a.message
                   + (a.code === 'stuck_run'
                      ? ' — "Restart stuck lane" asks PhantomBuster and '
                        + 'frees it.' : ''));
        });
    }

    function render(s) {
        var lane = $('lane');
        lane.textContent = s.lane.state;
        lane.className = 'badge ' + ({ open: 'ok', closed: 'warn',
                                       paused: 'warn', draining: 'warn' }
                                     [s.lane.state] || 'err');

        $('running-count').textContent = s.counts.running;
        $('running-slots').textContent = 'of ' + s.max_running + ' slot'
                                         + (s.max_running > 1 ? 's' : '');
        $('pending-count').textContent = s.counts.pending;
        $('retry-count').textContent = s.counts.retry
                                       ? s.counts.retry + ' waiting to retry'
                                       : '';
        $('eta').textContent = s.eta.queue_done_in_ms == null ? '–'
                               : (s.eta.exact ? '' : '~')
                                 + duration(s.eta.queue_done_in_ms);
        $('eta-note').textContent = s.eta.blocked
            ? 'unknown: ' + s.eta.blocked
            : s.eta.queue_done_in_ms == null ? 'no run history yet'
            : s.counts.pending + s.counts.running === 0 ? 'nothing to do'
            : 'from each agent\'s average run';
        $('dead-count').textContent = s.counts.dead;
        $('done-count').textContent = s.counts.done + ' done';
        $('last-webhook').textContent = s.webhooks.last_age_ms == null
                                        ? 'never'
                                        : duration(s.webhooks.last_age_ms)
                                          + ' ago';
        $('webhook-queue').textContent = s.webhooks.queued + ' queued'
            + (s.webhooks.invalid ? ', ' + s.webhooks.invalid + ' invalid'
                                  : '');
        $('workers-alive').textContent = s.workers.filter(function (w) {
            return w.alive;
        }).length;
        $('workers-list').textContent = s.workers.map(function (w) {
            return w.id + (w.alive ? '' : ' (dead)');
        }).join(', ');

        fill('running-table', s.running, 'nothing running', function (r) {
            var share = r.avg_run_ms ? r.elapsed_ms / r.avg_run_ms : 0;
            var bar = el('div', { className: 'progress'
                                  + (share > 1 ? ' over' : '') },
                         [el('div', {})]);
            bar.firstChild.style.width = Math.min(100, share * 100) + '%';
            var tr = el('tr', { 'data-job-id': r.id,
                                className: r.stuck ? 'stuck' : '' }, [
                td(r.id, 'mono'), td(r.agent, 'mono'),
                td(r.container, 'mono'), td(clock(r.launched_at)),
                td(duration(r.elapsed_ms), 'num'),
                el('td', {}, [bar, document.createTextNode(
                    r.stuck ? ' stuck: ' + duration(r.overdue_ms)
                              + ' past its deadline'
                    : r.remaining_ms == null ? ''
                    : ' ~' + duration(r.remaining_ms) + ' left')])]);
            return tr;
        });

        $('pending-note').textContent = s.counts.pending > s.pending.length
            ? '(first ' + s.pending.length + ' of ' + s.counts.pending + ')'
            : '';
        fill('pending-table', s.pending, 'queue empty', function (p) {
            return el('tr', { 'data-job-id': p.id }, [
                td(p.position, 'num'), td(p.id, 'mono'), td(p.agent, 'mono'),
                td(p.priority, 'num'), td(duration(p.waiting_ms), 'num'),
                td(duration(p.starts_in_ms), 'num'),
                td(duration(p.done_in_ms), 'num')]);
        });

        fill('dead-table', s.dead, 'no dead letters', function (d) {
            var b = el('button', { type: 'button', className: 'retry',
                                   'data-retry': d.id, text: 'Retry' });
            b.addEventListener('click', function () {
                command({ cmd: 'dlq_retry', id: d.id }, b);
            });
            return el('tr', { 'data-job-id': d.id }, [
                td(d.id, 'mono'), td(d.agent, 'mono'), td(d.error),
                td(d.attempts, 'num'), td(clock(d.dead_at)),
                el('td', {}, [b])]);
        });

        fill('recent-table', s.recent, 'nothing finished yet', function (r) {
            return el('tr', { 'data-job-id': r.id }, [
                td(r.id, 'mono'), td(r.agent, 'mono'),
                el('td', {}, [el('span', { className: 'badge ' + r.outcome,
                                           text: r.outcome })]),
                td(duration(r.duration_ms), 'num'), td(r.found_by),
                td(r.exit_message || r.error), td(clock(r.finished_at))]);
        });

        $('pause').disabled = s.lane.state === 'paused';
        $('resume').disabled = s.lane.state !== 'paused'
                               && s.lane.state !== 'draining';
        $('retry-all').disabled = s.counts.dead === 0;
    }

    function showUpdated() {
        $('updated').textContent = problem ? problem.title
            : last ? 'updated ' + Math.round((Date.now() - lastAt) / 1000)
                     + ' s ago' : 'connecting…';
    }

    function poll() {
        fetch(statusUrl, { cache: 'no-store', credentials: 'same-origin' })
            .then(function (resp) {
                return resp.json().catch(function () { return null; })
                    .then(function (body) { return [resp, body]; });
            })
            .then(function (rb) {
                var resp = rb[0], body = rb[1];
                if (resp.ok && body && body.counts) {
                    last = body;
                    lastAt = Date.now();
                    problem = null;
                    render(body);
                } else if (resp.status === 503) {
                    problem = { title: 'Redis unreachable.',
                                text: 'nginx cannot read the queue ('
                                      + ((body && body.error)
                                         || 'HTTP 503')
                                      + '); showing the last known state.' };
                } else {
                    problem = { title: 'Status unavailable.',
                                text: 'HTTP ' + resp.status + ' from '
                                      + statusUrl };
                }
            })
            .catch(function () {
                problem = { title: 'nginx unreachable.',
                            text: 'the status location does not answer.' };
            })
            .then(function () {
                document.querySelector('main').classList
                    .toggle('stale', problem !== null);
                renderBanners(last);
                showUpdated();
                setTimeout(poll, POLL_MS);
            });
    }

    /* ---- actions ------------------------------------------------------ */

    var tokenInput = $('token');
    tokenInput.value = sessionStorage.getItem('pb-admin-token') || '';
    tokenInput.addEventListener('change', function () {
        sessionStorage.setItem('pb-admin-token', tokenInput.value);
    });

    function say(text) { $('action-result').textContent = text; }

    function admin(method, url, body) {
        return fetch(url, {
            method: method,
            cache: 'no-store',
            credentials: 'same-origin',
            headers: { 'Content-Type': 'application/json',
                       'X-Phantombuster-Token': tokenInput.value },
            body: body ? JSON.stringify(body) : undefined
        }).then(function (resp) {
            return resp.json().catch(function () { return {}; })
                .then(function (b) { return { status: resp.status, body: b }; });
        });
    }

    function waitResult(id, started) {
        var sep = adminUrl.indexOf('?') < 0 ? '?' : '&';
        return admin('GET', adminUrl + sep + 'result=' + encodeURIComponent(id))
            .then(function (r) {
                if (r.status === 200) { return r.body; }
                if (r.status === 404 && Date.now() - started < RESULT_WAIT_MS) {
                    return new Promise(function (ok) {
                        setTimeout(ok, RESULT_POLL_MS);
                    }).then(function () { return waitResult(id, started); });
                }
                throw new Error(r.status === 404
                    ? 'no worker took the command (is pb-worker running?)'
                    : (r.body.error || 'HTTP ' + r.status));
            });
    }

    function command(req, button) {
        if (button) { button.disabled = true; }
        say(req.cmd + '…');
        admin('POST', adminUrl, req).then(function (r) {
            if (r.status !== 202) {
                throw new Error(r.status === 403 || r.status === 401
                    ? 'refused: wrong or missing admin token'
                    : (r.body.error || 'HTTP ' + r.status));
            }
            say(req.cmd + ': sent, waiting for a worker…');
            return waitResult(r.body.request_id, Date.now());
        }).then(function (answer) {
            say(req.cmd + ': ' + (answer.ok ? 'done'
                                  : 'failed: ' + answer.error));
        }).catch(function (e) {
            say(req.cmd + ': ' + e.message);
        }).then(function () {
            if (button) { button.disabled = false; }
        });
    }

    $('pause').addEventListener('click', function () {
        command({ cmd: 'pause' }, $('pause'));
    });
    $('resume').addEventListener('click', function () {
        command({ cmd: 'resume' }, $('resume'));
    });
    $('restart').addEventListener('click', function () {
        command({ cmd: 'restart' }, $('restart'));
    });
    $('retry-all').addEventListener('click', function () {
        command({ cmd: 'dlq_retry_all' }, $('retry-all'));
    });

    $('json-link').href = statusUrl;
    setInterval(showUpdated, 1000);
    poll();
}());
