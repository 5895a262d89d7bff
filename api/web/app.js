// hashgrid dashboard: renders /api/v1 snapshots pushed over server-sent events.
// Everything from the pool (worker names, agents) is untrusted text: it is only ever
// set with textContent, never parsed as HTML.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const path = location.pathname;
  const address = path.startsWith('/address/') ? decodeURIComponent(path.slice(9)) : '';

  // ---- formatting ----
  function hashrate(h) {
    const u = ['H/s', 'kH/s', 'MH/s', 'GH/s', 'TH/s', 'PH/s', 'EH/s'];
    let i = 0;
    h = Number(h) || 0;
    while (h >= 1000 && i < u.length - 1) { h /= 1000; i++; }
    return (h >= 100 ? h.toFixed(0) : h >= 10 ? h.toFixed(1) : h.toFixed(2)) + ' ' + u[i];
  }
  function num(n) { return (Number(n) || 0).toLocaleString('en-US'); }
  function diff(d) {
    d = Number(d) || 0;
    if (d === 0) return '0';
    if (d >= 1e12) return (d / 1e12).toFixed(2) + 'T';
    if (d >= 1e9) return (d / 1e9).toFixed(2) + 'G';
    if (d >= 1e6) return (d / 1e6).toFixed(2) + 'M';
    if (d >= 1e3) return (d / 1e3).toFixed(2) + 'k';
    if (d >= 1) return d.toFixed(2);
    return d.toPrecision(3);
  }
  function btc(sat) {
    sat = Number(sat) || 0;
    return (sat / 1e8).toFixed(8).replace(/0{1,5}$/, '') + ' BTC';
  }
  // The time hashrates cover: the window, or the pool's age while it is younger.
  function span(p) {
    const s = Number(p.hashrate_span_seconds) || Number(p.hashrate_window_seconds) || 0;
    return s < 120 ? Math.max(1, Math.round(s)) + ' s' : Math.round(s / 60) + ' min';
  }
  function pct(x) { return (100 * (Number(x) || 0)).toFixed(x > 0 && x < 0.001 ? 3 : 1) + '%'; }
  function ago(iso) {
    if (!iso) return '–';
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 60) return Math.floor(s) + 's ago';
    if (s < 3600) return Math.floor(s / 60) + 'm ago';
    if (s < 86400) return Math.floor(s / 3600) + 'h ago';
    return Math.floor(s / 86400) + 'd ago';
  }
  function shortHash(h) { return h.length > 20 ? h.slice(0, 8) + '…' + h.slice(-8) : h; }
  function shortAddr(a) { return a.length > 22 ? a.slice(0, 10) + '…' + a.slice(-8) : a; }

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) {
      if (k === 'class') e.className = attrs[k];
      else if (k === 'text') e.textContent = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    for (const c of kids) if (c != null) e.append(c);
    return e;
  }
  function set(id, text, cls) {
    const e = $(id);
    if (!e) return;
    e.textContent = text;
    if (cls !== undefined) e.className = cls;
  }
  function fill(tbody, rows, cols, empty) {
    tbody.replaceChildren();
    if (rows.length === 0) {
      tbody.append(el('tr', { class: 'empty' }, el('td', { colspan: String(cols), text: empty })));
      return;
    }
    for (const r of rows) tbody.append(r);
  }

  // ---- chart (SVG, drawn here: no library) ----
  const chart = { history: [], live: [], bucket: 60 };
  const SVGNS = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
  function drawChart() {
    const box = $('chart');
    const W = Math.max(280, box.clientWidth), H = Math.max(150, box.clientHeight);
    const pad = { l: 64, r: 14, t: 12, b: 26 };
    // Completed history buckets (plotted at their end), then live points after them.
    const pts = [];
    // A young pool has hours of empty history: start one bucket before the first work.
    let hist = chart.history;
    const firstWork = hist.findIndex((p) => p.h > 0);
    hist = firstWork < 0 ? hist.slice(-1) : hist.slice(Math.max(0, firstWork - 1));
    for (let i = 0; i < hist.length - 1; i++) pts.push([hist[i].t + chart.bucket * 1000, hist[i].h]);
    const lastT = pts.length ? pts[pts.length - 1][0] : 0;
    for (const p of chart.live) if (p.t > lastT) pts.push([p.t, p.h]);
    const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none' });
    const defs = svg('defs', {});
    const grad = svg('linearGradient', { id: 'grad', x1: '0', y1: '0', x2: '0', y2: '1' });
    grad.append(svg('stop', { offset: '0%', 'stop-color': '#f7931a', 'stop-opacity': '0.35' }));
    grad.append(svg('stop', { offset: '100%', 'stop-color': '#f7931a', 'stop-opacity': '0' }));
    defs.append(grad);
    s.append(defs);
    if (pts.length === 0) {
      const t = svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'nodata' });
      t.textContent = 'waiting for shares…';
      s.append(t);
      box.replaceChildren(s);
      return;
    }
    let t0 = pts[0][0], t1 = pts[pts.length - 1][0];
    if (t1 - t0 < 60000) t0 = t1 - 60000;
    const ymax = niceMax(Math.max(...pts.map((p) => p[1])) * 1.1);
    const x = (t) => pad.l + (W - pad.l - pad.r) * (t - t0) / (t1 - t0);
    const y = (v) => pad.t + (H - pad.t - pad.b) * (1 - v / ymax);
    const grid = svg('g', { class: 'grid' }), axis = svg('g', { class: 'axis' });
    for (let i = 0; i <= 4; i++) {
      const v = ymax * i / 4, yy = y(v);
      grid.append(svg('line', { x1: pad.l, x2: W - pad.r, y1: yy, y2: yy }));
      const lab = svg('text', { x: pad.l - 8, y: yy + 4, 'text-anchor': 'end' });
      lab.textContent = hashrate(v);
      axis.append(lab);
    }
    const ticks = W < 500 ? 2 : 6;
    for (let i = 0; i <= ticks; i++) {
      const t = t0 + (t1 - t0) * i / ticks;
      const lab = svg('text', { x: x(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === ticks ? 'end' : 'middle' });
      lab.textContent = new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: (t1 - t0) < 600000 ? '2-digit' : undefined, hour12: false });
      axis.append(lab);
    }
    s.append(grid, axis);
    let d = '';
    pts.forEach((p, i) => { d += (i ? 'L' : 'M') + x(p[0]).toFixed(1) + ' ' + y(p[1]).toFixed(1); });
    const area = d + `L${x(pts[pts.length - 1][0]).toFixed(1)} ${y(0)}L${x(pts[0][0]).toFixed(1)} ${y(0)}Z`;
    s.append(svg('path', { d: area, class: 'area' }));
    s.append(svg('path', { d: d, class: 'line', 'data-points': String(pts.length) }));
    const last = pts[pts.length - 1];
    s.append(svg('circle', { cx: x(last[0]), cy: y(last[1]), r: 4, class: 'dot' }));
    box.replaceChildren(s);
    $('chart-hint').textContent = 'now ' + hashrate(last[1]);
  }
  async function loadHistory() {
    try {
      const q = address ? '?address=' + encodeURIComponent(address) : '';
      const r = await fetch('/api/v1/history' + q, { cache: 'no-store' });
      if (!r.ok) return;
      const h = await r.json();
      chart.bucket = h.bucket_seconds || 60;
      chart.history = (h.points || []).map((p) => ({ t: p.t, h: p.h }));
      drawChart();
    } catch (e) { /* the live stream keeps the chart going */ }
  }
  function addLive(t, h) {
    chart.live.push({ t: t, h: h });
    const keep = Date.now() - 3 * 3600 * 1000;
    while (chart.live.length > 2000 || (chart.live.length && chart.live[0].t < keep)) chart.live.shift();
    drawChart();
  }

  // ---- rendering ----
  const seenWorkers = new Set(), seenBlocks = new Set();
  let firstRender = true;

  function workerRows(workers, linkAddress) {
    return workers.map((w) => {
      const full = w.name ? w.address + '.' + w.name : w.address;
      const who = el('div', { class: 'who' }, el('span', { class: 'dot' + (w.online ? ' on' : ''), title: w.online ? 'connected' : 'no connection' }));
      if (linkAddress) {
        who.append(el('a', { href: '/address/' + encodeURIComponent(w.address), title: full, class: 'mono', text: shortAddr(w.address) + (w.name ? '.' + w.name : '') }));
      } else {
        who.append(el('span', { class: 'n mono', title: full, text: w.name || '(default)' }));
      }
      const rej = el('td', { class: 'num' + (w.reject_rate > 0.05 ? ' bad' : w.reject_rate > 0.01 ? ' warn' : ''), text: w.accepted + w.rejected ? pct(w.reject_rate) : '–' });
      const tr = el('tr', { 'data-worker': full },
        el('td', {}, who),
        el('td', { class: 'num', text: hashrate(w.hashrate) }),
        el('td', { class: 'num', text: w.online ? diff(w.difficulty) : '–' }),
        el('td', { title: w.last_share || '', text: ago(w.last_share) }),
        rej,
        el('td', { class: 'opt muted', title: w.protocol ? 'Stratum ' + w.protocol.toUpperCase() : '', text: (w.protocol && w.protocol !== 'v1' ? w.protocol.toUpperCase() + ' · ' : '') + (w.user_agent || '') }));
      if (!firstRender && !seenWorkers.has(full)) tr.className = 'fresh';
      seenWorkers.add(full);
      return tr;
    });
  }

  function blockRows(blocks) {
    return blocks.map((b) => {
      const finder = b.worker ? b.finder + '.' + b.worker : b.finder;
      const tr = el('tr', { 'data-hash': b.hash, 'data-status': b.status },
        el('td', { class: 'num', text: num(b.height) }),
        el('td', { class: 'mono', title: b.hash, text: shortHash(b.hash) }),
        el('td', { class: 'opt' }, el('a', { href: '/address/' + encodeURIComponent(b.finder), class: 'mono', title: finder, text: shortAddr(b.finder) + (b.worker ? '.' + b.worker : '') })),
        el('td', { class: 'num', text: btc(b.reward_sat) }),
        el('td', { class: 'num', text: b.status === 'accepted' || b.status === 'confirmed' ? num(b.confirmations) : '–' }),
        el('td', {}, el('span', { class: 'pill ' + b.status, title: b.reason || '', text: b.status })),
        el('td', { class: 'opt muted', title: b.time, text: ago(b.time) }));
      if (!firstRender && !seenBlocks.has(b.hash)) tr.className = 'fresh';
      seenBlocks.add(b.hash);
      return tr;
    });
  }

  function renderPool(s) {
    const p = s.pool;
    set('network', p.network || '?');
    set('c-hashrate', hashrate(p.hashrate));
    set('c-window', 'over ' + span(p));
    const online = s.workers.filter((w) => w.online).length;
    set('c-workers', num(online));
    set('c-conns', num(p.connections) + ' connections');
    set('c-blocks', num(p.blocks_found));
    set('c-lastblock', s.blocks.length ? 'last ' + ago(s.blocks[0].time) : 'none yet');
    set('c-shares', num(p.shares_accepted));
    const tot = p.shares_accepted + p.shares_rejected;
    set('c-reject', num(p.shares_rejected) + ' rejected' + (tot ? ' · ' + pct(p.shares_rejected / tot) : ''));
    set('c-height', p.height > 0 ? num(p.height - 1) : '–');
    set('c-template', s.template.transactions + ' txs · ' + btc(s.template.reward_sat));
    set('c-netdiff', diff(p.network_difficulty));
    const from = { blocks: 'last ' + p.network_hashrate_blocks + ' blocks', difficulty: '10 min a block', pool: 'at least this pool' }[p.network_hashrate_from] || '';
    set('c-nethash', '≈ ' + hashrate(p.network_hashrate) + (from ? ' · ' + from : ''));
    set('workers-hint', 'hashrate over ' + span(p));
    fill($('workers').tBodies[0], workerRows(s.workers, true), 6, 'No workers yet');
    addLive(s.point.t, s.point.h);
  }

  function renderNode(s) {
    const n = s.node;
    set('c-node', n.ok ? 'healthy' : 'degraded', n.ok ? 'ok' : 'bad');
    const up = n.nodes.filter((x) => x.up).length;
    set('c-nodedetail', up + ' of ' + n.nodes.length + ' up');
    const ul = $('nodes');
    ul.replaceChildren(...n.nodes.map((x) => el('li', {},
      el('span', { class: 'dot' + (x.up ? ' on' : '') }),
      el('span', { class: 'url mono', text: x.url }),
      el('span', { class: 'muted', text: x.up ? x.latency_ms.toFixed(1) + ' ms' : (x.last_error || 'down') }))));
  }

  function renderAddress(s) {
    const a = s.address;
    set('network', s.pool.network || '?');
    // An address the pool has never heard of has no figures, not zeros.
    $('a-unknown').hidden = a.known;
    $('a-cards').hidden = !a.known;
    set('a-hashrate', hashrate(a.hashrate));
    const online = a.workers.filter((w) => w.online).length;
    set('a-online', online + ' of ' + a.workers.length + ' workers online');
    set('a-accepted', num(a.shares_accepted));
    set('a-work', 'work ' + diff(a.accepted_work));
    set('a-rejected', num(a.shares_rejected));
    const tot = a.shares_accepted + a.shares_rejected;
    set('a-rejrate', tot ? pct(a.shares_rejected / tot) + ' of all shares' : '');
    set('a-best', diff(a.best_difficulty));
    set('a-blocks', num(a.blocks.length));
    set('workers-hint', 'hashrate over ' + span(s.pool));
    fill($('workers').tBodies[0], workerRows(a.workers, false), 6, 'No workers seen for this address');
    fill($('shares').tBodies[0], a.recent_shares.map((sh) => el('tr', {},
      el('td', { title: sh.time, text: ago(sh.time) }),
      el('td', { class: 'mono', text: sh.worker || '(default)' }),
      el('td', { class: 'num', text: diff(sh.difficulty) }),
      el('td', { class: 'num', text: diff(sh.actual_difficulty) }),
      el('td', {}, el('span', { class: sh.result === 'accepted' ? 'ok' : 'bad', text: sh.block ? 'block!' : sh.result })))), 5, 'No shares yet');
    fill($('blocks').tBodies[0], blockRows(a.blocks), 7, 'No blocks found by this address yet');
    addLive(s.point.t, a.hashrate);
  }

  let payoutsOff = false;
  function render(s) {
    payoutsOff = s.payouts === false;
    renderNode(s);
    if (address) {
      renderAddress(s);
    } else {
      renderPool(s);
      fill($('blocks').tBodies[0], blockRows(s.blocks), 7, 'No blocks yet');
    }
    firstRender = false;
    set('updated', 'updated ' + new Date(s.time).toLocaleTimeString());
  }

  // ---- earnings (from the payouts API, when this pool runs it) ----
  // Each figure is placed by name: nothing from the reply is shown as it comes
  // (no ledger keys, no objects), and fields added later stay out until placed here.
  const creditKinds = {
    block: 'block credited', mature: 'block matured', orphaned: 'orphaned block reversed',
    pps: 'share credit', payout: 'in a payout batch', sent: 'payout sent',
  };
  const schemes = { pplns: 'PPLNS', pps: 'PPS', fpps: 'FPPS', solo: 'SOLO' };
  function card(label, value, note) {
    return el('div', { class: 'card' }, el('span', { class: 'label', text: label }), el('b', { text: value }), note ? el('small', { text: note }) : null);
  }
  function table(head, rows, empty) {
    const t = el('table', {}, el('thead', {}, el('tr', {}, ...head.map(([h, cls]) => el('th', { class: cls || '', text: h })))));
    const tb = el('tbody', {});
    fill(tb, rows, head.length, empty);
    t.append(tb);
    return el('div', { class: 'scroll' }, t);
  }
  function renderEarnings(m, payouts) {
    const b = m.balances || {};
    const scheme = schemes[m.scheme] || String(m.scheme || '').toUpperCase();
    const kv = el('div', { class: 'kv' },
      card('Earned', btc(b.earned_sat), 'all time, ' + scheme),
      card('Immature', btc(b.immature_sat), 'blocks under 100 confirmations'),
      card('Balance', btc(b.mature_sat), 'waiting for the payout threshold'),
      card('Pending', btc(b.pending_sat), 'in a payout not yet sent'),
      card('Paid', btc(b.paid_sat), 'coinbase outputs and payouts'));
    const credits = (m.credits || []).slice(0, 50).map((c) => el('tr', { 'data-kind': c.kind },
      el('td', { title: c.time, text: ago(c.time) }),
      el('td', { text: creditKinds[c.kind] || c.kind }),
      el('td', { class: 'mono', title: c.block || '', text: c.block ? shortHash(c.block) : '–' }),
      el('td', { class: 'num' + (c.amount_sat < 0 ? ' bad' : ''), text: btc(c.amount_sat) + (c.direct ? ' (coinbase)' : '') })));
    const pays = (payouts || []).slice(0, 50).map((p) => el('tr', {},
      el('td', { class: 'num', text: num(p.batch) }),
      el('td', { title: p.created, text: ago(p.created) }),
      el('td', { class: 'num', text: btc(p.amount_sat) }),
      el('td', {}, el('span', { class: 'pill ' + p.status, text: p.status })),
      el('td', { class: 'mono', title: p.txid || '', text: p.txid ? shortHash(p.txid) : '–' })));
    $('earnings').replaceChildren(kv,
      el('h3', { class: 'hint', text: 'Credits' }),
      table([['When'], ['What'], ['Block'], ['Amount', 'num']], credits, 'No credits yet'),
      el('h3', { class: 'hint', text: 'Payouts' }),
      table([['Batch', 'num'], ['When'], ['Amount', 'num'], ['Status'], ['Transaction']], pays, 'No payouts yet'));
  }
  async function loadEarnings() {
    const hint = $('earnings-hint');
    if (payoutsOff) {
      $('earnings').replaceChildren(el('p', { class: 'muted', text: 'This pool runs no payout scheme: its coinbase pays the pool\'s own address, so no earnings are kept per miner.' }));
      return;
    }
    try {
      const r = await fetch('/api/v1/miners/' + encodeURIComponent(address), { cache: 'no-store' });
      const json = (r.headers.get('Content-Type') || '').includes('application/json');
      if (r.ok && json) {
        const m = await r.json();
        let payouts = [];
        const pr = await fetch('/api/v1/payouts?address=' + encodeURIComponent(address), { cache: 'no-store' });
        if (pr.ok) payouts = await pr.json();
        renderEarnings(m, payouts);
        hint.textContent = '';
        return;
      }
      if (r.status === 404) {
        $('earnings').replaceChildren(el('p', { class: 'muted', text: 'No earnings recorded for this address yet.' }));
      } else {
        hint.textContent = 'payouts unavailable (' + r.status + ')';
      }
    } catch (e) {
      hint.textContent = 'payouts unavailable';
    }
  }

  // ---- live updates ----
  function connect() {
    const live = $('live');
    const es = new EventSource('/api/v1/events' + (address ? '?address=' + encodeURIComponent(address) : ''));
    es.addEventListener('open', () => { live.className = 'live on'; live.lastChild.textContent = 'live'; });
    es.addEventListener('error', () => { live.className = 'live off'; live.lastChild.textContent = 'reconnecting'; });
    es.addEventListener('snapshot', (ev) => {
      live.className = 'live on'; live.lastChild.textContent = 'live';
      try { render(JSON.parse(ev.data)); } catch (e) { console.error(e); }
    });
    es.addEventListener('problem', (ev) => { live.lastChild.textContent = 'pool problem'; });
  }

  // ---- start ----
  $('search').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const a = $('search-input').value.trim();
    if (/^[A-Za-z0-9]{1,100}$/.test(a)) location.href = '/address/' + encodeURIComponent(a);
    else $('search-input').setCustomValidity('letters and digits only'), $('search-input').reportValidity();
  });
  $('search-input').addEventListener('input', () => $('search-input').setCustomValidity(''));
  if (address) {
    document.title = 'hashgrid · ' + shortAddr(address);
    $('pool-view').hidden = true;
    $('address-view').hidden = false;
    $('address-view').setAttribute('data-address', address);
    $('a-address').textContent = address;
    $('search-input').value = address;
    $('chart-title').textContent = 'Your hashrate';
    $('earnings-panel').hidden = false;
    $('shares-panel').hidden = false;
    $('nodes-panel').hidden = true;
  }
  // The page arrives with a first snapshot: show it before the stream connects.
  try {
    const first = $('snapshot').textContent;
    if (first) render(JSON.parse(first));
  } catch (e) { console.error(e); }
  if (address) {
    loadEarnings();
    setInterval(loadEarnings, 15000);
  }
  drawChart();
  loadHistory();
  setInterval(loadHistory, 60000);
  window.addEventListener('resize', drawChart);
  connect();
})();
