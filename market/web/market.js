// hashgrid market: the buyers' page. It polls the public order book and, with the API
// key the buyer typed in (kept in this tab's sessionStorage, sent only as a bearer
// token to this same API), their account, orders and an order's delivered speed.
// Every value from the API is set with textContent, never parsed as HTML, and no
// object is ever printed: each field is formatted on its own.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const KEY = 'hashgrid-market-key';
  const EVERY = 3000;

  // ---- formatting ----
  function num(n) { return (Number(n) || 0).toLocaleString('en-US'); }
  function hashrate(h) {
    const u = ['H/s', 'kH/s', 'MH/s', 'GH/s', 'TH/s', 'PH/s', 'EH/s'];
    let i = 0;
    h = Number(h) || 0;
    while (h >= 1000 && i < u.length - 1) { h /= 1000; i++; }
    return (h >= 100 ? h.toFixed(0) : h >= 10 ? h.toFixed(1) : h.toFixed(2)) + ' ' + u[i];
  }
  function speed(th) { return hashrate((Number(th) || 0) * 1e12); }
  function money(sat) {
    sat = Number(sat) || 0;
    if (Math.abs(sat) < 100000) return num(sat) + ' sat';
    return (sat / 1e8).toLocaleString('en-US', { maximumFractionDigits: 8 }) + ' BTC';
  }
  function price(p) { return money(p) + ' per PH/s·day'; }
  function limit(l) { return Number(l) > 0 ? speed(l) : 'none'; }
  function host(u) {
    const s = String(u || '');
    const i = s.indexOf('://');
    return i >= 0 ? s.slice(i + 3) : s;
  }

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
  function set(id, text) { const e = $(id); if (e) e.textContent = text; }
  function fill(tbody, rows, cols, empty) {
    tbody.replaceChildren();
    if (rows.length === 0) {
      tbody.append(el('tr', { class: 'empty' }, el('td', { colspan: String(cols), text: empty })));
      return;
    }
    for (const r of rows) tbody.append(r);
  }

  // ---- talking to the API ----
  // The one error shape is {"error":{"code","message"}}: only its message is shown.
  async function api(path, key) {
    const headers = {};
    if (key) headers.Authorization = 'Bearer ' + key;
    const r = await fetch(path, { headers: headers, cache: 'no-store' });
    let body = null;
    try { body = await r.json(); } catch (e) { body = null; }
    if (!r.ok) {
      const msg = body && body.error && typeof body.error.message === 'string' ? body.error.message : 'HTTP ' + r.status;
      const err = new Error(msg);
      err.status = r.status;
      throw err;
    }
    return body;
  }

  // ---- chart (SVG, drawn here: no library) ----
  const chart = { points: [], bucket: 60, now: null };
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
    if (!box || box.offsetParent === null) return;
    const W = Math.max(280, box.clientWidth), H = Math.max(150, box.clientHeight);
    const pad = { l: 64, r: 14, t: 12, b: 26 };
    // Completed buckets, plotted at their end, then the current speed now.
    const pts = chart.points.map((p) => [Date.parse(p.time) + chart.bucket * 1000, p.speed * 1e12]);
    if (chart.now) pts.push([chart.now.t, chart.now.h]);
    const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none' });
    const defs = svg('defs', {});
    const grad = svg('linearGradient', { id: 'grad', x1: '0', y1: '0', x2: '0', y2: '1' });
    grad.append(svg('stop', { offset: '0%', 'stop-color': '#f7931a', 'stop-opacity': '0.35' }));
    grad.append(svg('stop', { offset: '100%', 'stop-color': '#f7931a', 'stop-opacity': '0' }));
    defs.append(grad);
    s.append(defs);
    if (pts.length === 0 || (pts.length === 1 && pts[0][1] === 0)) {
      const t = svg('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle', class: 'nodata' });
      t.textContent = selected ? 'no delivery yet' : 'select an order';
      s.append(t);
      box.replaceChildren(s);
      set('chart-hint', '');
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
    set('chart-hint', 'now ' + hashrate(last[1]));
  }

  // ---- state ----
  let key = sessionStorage.getItem(KEY) || '';
  let selected = '';
  let orders = [];

  function note(text, bad) {
    const n = $('key-note');
    n.textContent = text;
    n.className = 'note' + (bad ? ' bad' : '');
    n.hidden = !text;
  }
  function showBuyer(on) {
    $('buyer-view').hidden = !on;
    $('welcome').hidden = on;
    $('sign-out').hidden = !on;
    $('key-form').hidden = on;
  }

  function renderBook(b) {
    const levels = (b && b.levels) || [], book = (b && b.orders) || [];
    fill($('levels').tBodies[0], levels.map((l) => el('tr', { 'data-price': String(l.price) },
      el('td', { class: 'num', text: price(l.price) }),
      el('td', { class: 'num', text: num(l.orders) }),
      el('td', { class: 'num', text: limit(l.limit) }),
      el('td', { class: 'num', text: speed(l.speed) }),
      el('td', { class: 'num', text: speed(l.accepted_speed) }))), 5, 'No orders');
    fill($('book').tBodies[0], book.map((o) => el('tr', { 'data-order': String(o.id) },
      el('td', { class: 'mono', text: String(o.id) }),
      el('td', { text: String(o.kind) }),
      el('td', { class: 'num', text: price(o.price) }),
      el('td', { class: 'num', text: limit(o.limit) }),
      el('td', { class: 'num', text: num(o.sellers) }),
      el('td', { class: 'num', text: speed(o.speed) }),
      el('td', { class: 'num', text: speed(o.accepted_speed) }),
      el('td', {}, el('span', { class: 'pill ' + (o.alive ? 'active' : 'paused'), text: o.alive ? 'taking hashrate' : 'waiting' })))), 8, 'No orders');
    set('book-hint', book.length ? num(book.length) + ' live or paused, best price first' : '');
  }

  function renderAccount(a) {
    orders = (a && a.orders) || [];
    if (!selected || !orders.some((o) => o.id === selected)) {
      const live = orders.find((o) => o.status === 'active') || orders[0];
      selected = live ? live.id : '';
    }
    let escrow = 0, spent = 0, now = 0, shares = 0, open = 0;
    for (const o of orders) {
      const ended = o.status === 'cancelled' || o.status === 'expired';
      if (!ended) { escrow += Number(o.remaining) || 0; open++; }
      spent += Number(o.spent) || 0;
      now += Number(o.current_speed) || 0;
      shares += Number(o.shares_accepted) || 0;
    }
    set('c-balance', money(a.balance));
    set('c-escrow', money(escrow));
    set('c-orders', num(open) + (open === 1 ? ' open order' : ' open orders'));
    set('c-speed', speed(now));
    set('c-spent', money(spent));
    set('c-shares', num(shares) + ' shares accepted');
    fill($('orders').tBodies[0], orders.map((o) => {
      const status = el('td', {}, el('span', { class: 'pill ' + o.status, text: o.status }));
      if (o.reason) status.append(el('span', { class: 'reason', text: String(o.reason) }));
      const tr = el('tr', { 'data-order': String(o.id), 'data-status': String(o.status), class: o.id === selected ? 'selected' : '' },
        el('td', { class: 'mono', text: o.id + (o.kind === 'contract' ? ' (contract)' : '') }),
        status,
        el('td', { class: 'opt mono url', title: o.pool_user ? host(o.pool_url) + ' as ' + o.pool_user : host(o.pool_url), text: host(o.pool_url) }),
        el('td', { class: 'num', text: price(o.price) }),
        el('td', { class: 'num', text: limit(o.limit) }),
        el('td', { class: 'num', text: speed(o.current_speed) }),
        el('td', { class: 'num', text: money(o.spent) }),
        el('td', { class: 'num', text: money(o.remaining) }),
        el('td', { class: 'num opt', text: num(o.shares_accepted) }));
      tr.addEventListener('click', () => { selected = o.id; renderAccount(a); loadSpeed(); });
      return tr;
    }), 9, 'No orders yet');
    set('chart-title', selected ? 'Delivered speed · ' + selected : 'Delivered speed');
  }

  async function loadSpeed() {
    if (!key || !selected) { chart.points = []; chart.now = null; drawChart(); return; }
    const id = selected;
    try {
      const h = await api('/api/v1/orders/' + encodeURIComponent(id) + '/speed', key);
      if (id !== selected) return;
      chart.bucket = Number(h.bucket_seconds) || 60;
      chart.points = Array.isArray(h.points) ? h.points : [];
      chart.now = { t: Date.now(), h: (Number(h.current_speed) || 0) * 1e12 };
    } catch (e) {
      chart.points = []; chart.now = null;
    }
    drawChart();
  }

  // Compute leasing: providers' offers for everyone, a signed-in account's jobs. A
  // market without the compute API (404) shows neither panel.
  function bytes(n) {
    const gib = (Number(n) || 0) / (1 << 30);
    return gib >= 1 ? gib.toFixed(1) + ' GiB' : Math.round(gib * 1024) + ' MiB';
  }
  function renderOffers(offers) {
    $('compute-panel').hidden = false;
    fill($('compute-offers').tBodies[0], (offers || []).map((o) => el('tr', { 'data-provider': String(o.provider) },
      el('td', { text: (o.name || o.provider) }),
      el('td', { class: 'num', text: num(o.free && o.free.cores) + ' / ' + num(o.resources && o.resources.cores) }),
      el('td', { class: 'num', text: bytes(o.free && o.free.memory) }),
      el('td', { class: 'num opt', text: num(o.resources && o.resources.gpus ? o.resources.gpus.length : 0) }),
      el('td', { class: 'num', text: num(o.price) }),
      el('td', { class: 'num', text: num(o.mem_price) }))), 6, 'No offers');
  }
  function renderLiveLeases(leases) {
    $('compute-leases-panel').hidden = false;
    fill($('compute-leases').tBodies[0], (leases || []).map((l) => el('tr', { 'data-lease': String(l.id) },
      el('td', { class: 'mono', text: l.id }),
      el('td', { text: l.provider }),
      el('td', { text: l.kind }),
      el('td', {}, el('span', { class: 'pill ' + l.status, text: l.status })),
      el('td', { class: 'num', text: num(l.cores) }),
      el('td', { class: 'num', text: num(l.price) }),
      el('td', { class: 'num opt', text: ((Number(l.cpu_ms) || 0) / 1000).toFixed(1) + ' s' }),
      el('td', { class: 'num', text: money(l.charged) }))), 8, 'No leases running');
  }
  function renderLeases(jobs) {
    jobs = jobs || [];
    $('leases-panel').hidden = jobs.length === 0;
    fill($('leases').tBodies[0], jobs.map((j) => el('tr', { 'data-job': String(j.id), 'data-status': String(j.status) },
      el('td', { class: 'mono', text: j.id }),
      el('td', {}, el('span', { class: 'pill ' + j.status, text: j.status })),
      el('td', { class: 'num', text: j.kind === 'service' && j.service
        ? 'service, ' + num(j.service.served) + ' served'
        : num(j.units_done) + ' / ' + num(j.units) }),
      el('td', { class: 'num', text: num((j.leases || []).length) }),
      el('td', { class: 'num', text: money(j.charged) }),
      el('td', { class: 'num', text: money(j.budget) }),
      el('td', { class: 'opt', text: j.verdict ? j.verdict + ' (' + num(j.units_checked) + ' units)' : '–' }))), 7, 'No compute jobs yet');
  }

  async function refresh() {
    let ok = true;
    try { renderBook(await api('/api/v1/orderbook')); } catch (e) { ok = false; }
    try { renderOffers(await api('/api/v1/compute/offers')); } catch (e) { if (e.status !== 404) ok = false; }
    try { renderLiveLeases(await api('/api/v1/compute/leases')); } catch (e) { if (e.status !== 404) ok = false; }
    if (key) {
      try {
        renderAccount(await api('/api/v1/account', key));
        showBuyer(true);
        note('');
        try { renderLeases(await api('/api/v1/compute/orders', key)); } catch (e) { if (e.status !== 404) ok = false; }
        await loadSpeed();
      } catch (e) {
        if (e.status === 401) {
          signOut();
          note('That API key is not valid: ' + e.message, true);
        } else {
          ok = false;
        }
      }
    }
    const live = $('live');
    live.className = 'live ' + (ok ? 'on' : 'off');
    live.lastElementChild.textContent = ok ? 'live' : 'offline';
    set('updated', 'updated ' + new Date().toLocaleTimeString([], { hour12: false }));
  }

  function signOut() {
    key = '';
    selected = '';
    sessionStorage.removeItem(KEY);
    showBuyer(false);
    note('');
  }

  $('key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const k = $('key-input').value.trim();
    $('key-input').value = '';
    if (!k) return;
    key = k;
    sessionStorage.setItem(KEY, k);
    refresh();
  });
  $('sign-out').addEventListener('click', () => { signOut(); refresh(); });
  let resizeTimer = 0;
  window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawChart, 100); });

  showBuyer(false);
  refresh();
  setInterval(refresh, EVERY);
})();
