// The live status page: polls v1/stats (relative, so the page also works under a proxy's prefix) and
// draws what it says. Plain browser JavaScript, no build step, nothing from the network.
'use strict';

(function () {
  const POLL_MS = 1000;
  const RETRY_MS = 3000;
  const KEY_STORAGE = 'metrics-gateway.status-key';
  const SVG = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  const integer = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
  const decimal = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });
  const precise = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });

  /** Rates: whole rows above 10/s, one decimal below. */
  function rate(value) {
    if (value === null || value === undefined) return '–';
    return value >= 10 ? integer.format(value) : decimal.format(value);
  }

  function milliseconds(value) {
    if (value === null || value === undefined) return '–';
    return value >= 100 ? integer.format(value) : precise.format(value);
  }

  function duration(seconds) {
    const s = Math.floor(seconds);
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  }

  function clockTime(iso) {
    const date = new Date(iso);
    return date.toLocaleTimeString('en-GB', { hour12: false });
  }

  function setText(id, text) {
    const element = $(id);
    if (element.textContent !== text) element.textContent = text;
  }

  function cell(text, className) {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function replaceRows(tbody, rows) {
    tbody.replaceChildren(...rows);
  }

  // ---- Connection state and the API key ----

  function connection(state, text) {
    $('connection').dataset.state = state;
    setText('connection-text', text);
  }

  function storedKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || '';
    } catch {
      return '';
    }
  }

  /** A key typed into the form; else the one kept in sessionStorage, if any. */
  let keyOverride = '';

  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    try {
      sessionStorage.setItem(KEY_STORAGE, $('key-input').value.trim());
    } catch {
      // private mode: the key lasts until the page is left
    }
    keyOverride = $('key-input').value.trim();
    $('key-form').hidden = true;
    schedule(0);
  });

  $('admin-key-button').addEventListener('click', () => {
    $('key-label').textContent = 'An admin key shows the messages of the rejected lines:';
    $('key-form').hidden = false;
    $('key-input').focus();
  });

  // ---- Drawing ----

  function renderCards(stats) {
    setText('rate-accepted', rate(stats.ingest.accepted_rows_per_second));
    setText('total-accepted', integer.format(stats.totals.accepted_rows));
    setText('rate-rejected', rate(stats.ingest.rejected_rows_per_second));
    setText('total-rejected', integer.format(stats.totals.rejected_rows + stats.totals.rejected_at_flush_rows));
    setText('buffer-depth', integer.format(stats.buffer.depth));
    setText('buffer-capacity', integer.format(stats.buffer.capacity));
    const share = stats.buffer.capacity > 0 ? stats.buffer.depth / stats.buffer.capacity : 0;
    const meter = $('buffer-meter');
    meter.style.width = `${Math.min(100, share * 100).toFixed(1)}%`;
    meter.className = share >= 0.9 ? 'full' : share >= 0.5 ? 'high' : '';
    setText('flush-latency', milliseconds(stats.flush.mean_latency_ms));
    setText('batch-rows', stats.flush.mean_batch_rows === null ? '–' : integer.format(stats.flush.mean_batch_rows));
    setText('flushed-rate', rate(stats.ingest.flushed_rows_per_second));
    setText('window', decimal.format(stats.window_seconds));
    setText('uptime', duration(stats.uptime_seconds));
  }

  function renderReasons(stats) {
    const rows = stats.rejected_by_reason.map((reason) => {
      const tr = document.createElement('tr');
      if (reason.at_door + reason.at_flush === 0) tr.className = 'zero';
      tr.append(
        cell(reason.reason, 'error'),
        cell(integer.format(reason.at_door), 'num'),
        cell(integer.format(reason.at_flush), 'num'),
      );
      return tr;
    });
    replaceRows($('reasons').tBodies[0], rows);
  }

  function bytes(value) {
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit++;
    }
    return `${unit === 0 ? value : decimal.format(value)} ${units[unit]}`;
  }

  /** A partition bound in UTC, to the minute; null is open-ended. */
  function bound(iso, open) {
    return iso === null ? open : iso.slice(0, 16).replace('T', ' ');
  }

  function renderPartitions(stats) {
    const partitions = stats.partitions;
    $('partitions-panel').hidden = partitions === null;
    if (partitions === null) return;
    setText('partition-count', integer.format(partitions.count));
    setText('partition-bytes', bytes(partitions.total_bytes));
    setText('oldest-time', partitions.oldest_time_recorded === null ? 'none' : bound(partitions.oldest_time_recorded));
    const rows = partitions.list.map((p) => {
      const tr = document.createElement('tr');
      tr.append(
        cell(p.name),
        cell(p.to === null ? 'default (any other time)' : `${bound(p.from, 'earliest')} – ${bound(p.to)}`),
        cell(bytes(p.bytes), 'num'),
      );
      return tr;
    });
    replaceRows($('partitions').tBodies[0], rows);
  }

  function renderRejections(stats) {
    // Without an admin key (AUTH_REQUIRED=true) the entries come without their messages: codes only.
    const withheld = stats.rejection_messages === 'need_admin_key';
    const rows = stats.recent_rejections.map((entry) => {
      const tr = document.createElement('tr');
      tr.append(
        cell(clockTime(entry.time), 'time'),
        cell(entry.endpoint),
        cell(entry.line === null ? '' : integer.format(entry.line), 'num'),
        cell(entry.error, 'error'),
        typeof entry.message === 'string' ? cell(entry.message, 'message') : cell('–', 'message withheld'),
      );
      return tr;
    });
    replaceRows($('rejections').tBodies[0], rows);
    $('no-rejections').hidden = rows.length > 0;
    $('messages-withheld').hidden = !(withheld && rows.length > 0);
  }

  function svg(name, attributes, text) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
    if (text !== undefined) element.textContent = text;
    return element;
  }

  /** 1, 2 or 5 times a power of ten, at least `value`: a round top for the y axis. */
  function niceCeiling(value) {
    if (value <= 0) return 10;
    const power = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
    return 10 * power;
  }

  function renderChart(stats) {
    const container = $('chart');
    const width = container.clientWidth || 600;
    const height = container.clientHeight || 180;
    const left = 52;
    const right = 8;
    const top = 8;
    const bottom = 22;
    const plotWidth = width - left - right;
    const plotHeight = height - top - bottom;
    const points = stats.history.points;
    const spanMs = Math.max(60, points.length) * stats.history.interval_seconds * 1000;
    const end = Date.parse(stats.time);
    const start = end - spanMs;
    const max = niceCeiling(Math.max(0, ...points.map((p) => Math.max(p.accepted_per_second, p.rejected_per_second))));
    const x = (t) => left + ((t - start) / spanMs) * plotWidth;
    const y = (value) => top + plotHeight - (value / max) * plotHeight;

    const chart = svg('svg', { viewBox: `0 0 ${width} ${height}`, width, height });
    for (let i = 0; i <= 4; i++) {
      const value = (max / 4) * i;
      chart.append(svg('line', { class: 'grid', x1: left, x2: width - right, y1: y(value), y2: y(value) }));
      chart.append(
        svg('text', { class: 'axis', x: left - 8, y: y(value) + 4, 'text-anchor': 'end' }, integer.format(value)),
      );
    }
    for (const seconds of [60, 45, 30, 15, 0]) {
      const label = seconds === 0 ? 'now' : `−${seconds} s`;
      const anchor = seconds === 0 ? 'end' : seconds === 60 ? 'start' : 'middle';
      chart.append(
        svg('text', { class: 'axis', x: x(end - seconds * 1000), y: height - 6, 'text-anchor': anchor }, label),
      );
    }
    const visible = points.filter((p) => p.t >= start);
    if (visible.length > 0) {
      const line = (pick) =>
        visible.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.t).toFixed(1)},${y(pick(p)).toFixed(1)}`);
      const accepted = line((p) => p.accepted_per_second);
      const first = visible[0];
      const last = visible[visible.length - 1];
      const baseline = y(0).toFixed(1);
      chart.append(
        svg('path', {
          class: 'accepted-area',
          d: `${accepted.join('')}L${x(last.t).toFixed(1)},${baseline}L${x(first.t).toFixed(1)},${baseline}Z`,
        }),
      );
      chart.append(svg('path', { class: 'accepted-line', d: accepted.join('') }));
      chart.append(svg('path', { class: 'rejected-line', d: line((p) => p.rejected_per_second).join('') }));
    }
    container.replaceChildren(chart);
  }

  function render(stats) {
    renderCards(stats);
    renderReasons(stats);
    renderRejections(stats);
    renderPartitions(stats);
    renderChart(stats);
    connection('live', `live · updated ${clockTime(stats.time)}`);
  }

  // ---- Polling ----

  let timer;
  function schedule(delay) {
    clearTimeout(timer);
    timer = setTimeout(poll, delay);
  }

  async function poll() {
    const key = keyOverride || storedKey();
    try {
      const response = await fetch('v1/stats', {
        cache: 'no-store',
        headers: key ? { Authorization: `Bearer ${key}` } : {},
      });
      if (response.status === 401 || response.status === 403) {
        connection('error', 'an API key is needed');
        if (key) $('key-label').textContent = 'That key was refused (unknown or revoked); enter a valid API key:';
        $('key-form').hidden = false;
        return; // the form resumes polling
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      render(await response.json());
      schedule(POLL_MS);
    } catch (error) {
      connection('error', `no answer from the gateway (${error.message}); retrying`);
      schedule(RETRY_MS);
    }
  }

  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) schedule(0);
  });
  poll();
})();
