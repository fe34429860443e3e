// edged dashboard: reads /api/v1 and its event stream, draws the page.
// No framework and no build step; this file is served as it is.
'use strict';
(() => {
  const API = '/api/v1';
  const HISTORY_SINCE = '1h';
  const HISTORY_MS = 3600e3;
  const HISTORY_MAX = 720; // points kept per chart
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 30000;
  const SVG = 'http://www.w3.org/2000/svg';

  const st = {
    me: null,
    sensors: new Map(), // id -> sensor (as /sensors), quantities by name in .q
    controllers: new Map(), // id -> controller (as /controllers)
    statesIn: new Map(), // controller id -> states the event stream brought so far
    uplink: null,
    history: new Map(), // "sensor/quantity" -> [{t: ms, v}]
    es: null,
    retryMs: RETRY_MIN_MS,
    retryTimer: 0,
    loading: null,
    loginWanted: false,
  };

  const $ = (id) => document.getElementById(id);

  // el builds an element: el('p', {class: 'x', text: 'hi'}, child, ...).
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    setAttrs(e, attrs);
    return e;
  }
  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else e.setAttribute(k, v === true ? '' : v);
    }
  }

  class APIError extends Error {
    constructor(status, msg) { super(msg); this.status = status; }
  }

  // call does one API request; an error answer throws an APIError with the
  // API's own message, and a 401 (other than a failed login) opens the
  // login form.
  async function call(method, path, body) {
    const opt = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin', cache: 'no-store' };
    if (body !== undefined) {
      opt.headers['Content-Type'] = 'application/json';
      opt.body = JSON.stringify(body);
    }
    let r;
    try {
      r = await fetch(API + path, opt);
    } catch (e) {
      throw new APIError(0, 'gateway unreachable');
    }
    let data = null;
    if ((r.headers.get('Content-Type') || '').includes('json')) {
      try { data = await r.json(); } catch (e) { data = null; }
    }
    if (!r.ok) {
      const msg = (data && data.error) || `${r.status} ${r.statusText}`;
      if (r.status === 401 && path !== '/login') needLogin(msg);
      throw new APIError(r.status, msg);
    }
    return data;
  }

  // ---- formatting ----

  // fmtNum shows a value with as many decimals as its size warrants, or
  // more when asked (a chart's range that spans a tenth of a degree).
  function fmtNum(v, unit, moreDigits) {
    if (typeof v !== 'number' || !isFinite(v)) return '–';
    const a = Math.abs(v);
    const digits = Math.max(a >= 1000 || unit === 'lx' ? 0 : a >= 10 ? 1 : 2, moreDigits || 0);
    return v.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  }
  function fmtAge(s) {
    if (typeof s !== 'number' || !isFinite(s)) return '–';
    s = Math.max(0, Math.round(s));
    if (s < 60) return `${s} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }
  function fmtAgo(t) {
    const ms = Date.parse(t);
    if (!isFinite(ms)) return '';
    return fmtAge((Date.now() - ms) / 1000) + ' ago';
  }
  function fmtBytes(n) {
    if (typeof n !== 'number') return '–';
    if (n < 1024) return `${n} B`;
    if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1048576).toFixed(1)} MiB`;
  }
  const percent = (x) => (typeof x === 'number' ? `${Math.round(x * 100)} %` : '–');

  // ---- status line, errors ----

  function setConn(state, text) {
    const c = $('conn');
    c.dataset.state = state;
    c.textContent = text;
  }
  function showError(msg) {
    const e = $('error');
    e.textContent = msg || '';
    e.hidden = !msg;
  }

  // ---- who am I, login ----

  function renderMe() {
    const me = st.me;
    const who = $('who-text');
    if (!me) {
      who.textContent = 'Not signed in';
      $('login-open').hidden = !$('login').hidden;
      $('logout').hidden = true;
      return;
    }
    who.textContent = me.anonymous ? `Not signed in (${me.role})` : `${me.user} (${me.role})`;
    $('login-open').hidden = !me.anonymous || !$('login').hidden;
    $('logout').hidden = !!me.anonymous;
  }

  function needLogin(msg) {
    openLogin(msg);
  }
  function openLogin(msg) {
    const box = $('login');
    const was = box.hidden;
    box.hidden = false;
    $('login-error').textContent = msg && msg !== 'login required' ? msg : '';
    $('login-open').hidden = true;
    if (was) $('login-user').focus();
  }
  function closeLogin() {
    $('login').hidden = true;
    $('login-error').textContent = '';
    $('login-password').value = '';
    renderMe();
  }

  async function login(ev) {
    ev.preventDefault();
    const f = ev.target;
    const btn = f.querySelector('button[type=submit]');
    btn.disabled = true;
    $('login-error').textContent = '';
    try {
      await call('POST', '/login', { user: $('login-user').value, password: $('login-password').value });
      closeLogin();
      await reload();
    } catch (e) {
      $('login-error').textContent = e.status === 401 ? `Sign in failed: ${e.message}` : e.message;
      $('login-password').select();
    } finally {
      btn.disabled = false;
    }
  }

  async function logout() {
    try {
      await call('POST', '/logout');
    } catch (e) {
      showError(`Sign out failed: ${e.message}`);
      return;
    }
    await reload();
  }

  // ---- sensors ----

  const hkey = (s, q) => `${s}/${q}`;

  function addPoint(sensor, quantity, t, v) {
    const k = hkey(sensor, quantity);
    let h = st.history.get(k);
    if (!h) st.history.set(k, (h = []));
    const ms = Date.parse(t);
    if (!isFinite(ms) || typeof v !== 'number') return;
    if (h.length && ms <= h[h.length - 1].t) return; // already have it (history and stream overlap)
    h.push({ t: ms, v });
    const cut = ms - HISTORY_MS;
    while (h.length && (h[0].t < cut || h.length > HISTORY_MAX)) h.shift();
  }

  // chart draws a quantity's last hour as an SVG line with its min and max.
  function chart(sensor, q) {
    const h = st.history.get(hkey(sensor, q.name)) || [];
    const W = 300, H = 56, P = 3;
    const box = el('div', { class: 'chart' });
    const s = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', class: 'spark' });
    if (h.length < 2) {
      s.setAttribute('aria-label', `${q.name}: not enough history for a chart yet`);
      s.append(svg('line', { x1: 0, y1: H / 2, x2: W, y2: H / 2, class: 'empty' }));
      box.append(s, el('span', { class: 'range muted', text: 'collecting history…' }));
      return box;
    }
    // The last hour, or less when there is less: a gateway that started a
    // minute ago has a minute to draw, across the whole width.
    const t1 = h[h.length - 1].t, t0 = Math.max(h[0].t, t1 - HISTORY_MS);
    const dt = Math.max(t1 - t0, 1);
    const shown = t1 - t0 >= HISTORY_MS - 60e3 ? '1 h' : fmtAge((t1 - t0) / 1000);
    let lo = Infinity, hi = -Infinity;
    for (const p of h) { lo = Math.min(lo, p.v); hi = Math.max(hi, p.v); }
    const span = hi - lo || Math.max(Math.abs(hi) * 0.01, 0.5);
    const mid = (hi + lo) / 2;
    const ylo = hi === lo ? mid - span / 2 : lo;
    const x = (t) => ((t - t0) / dt) * W;
    const y = (v) => H - P - ((v - ylo) / span) * (H - 2 * P);
    const pts = h.map((p) => `${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
    const unit = q.unit || '';
    const more = hi - lo < 1 ? 2 : hi - lo < 10 ? 1 : 0;
    s.setAttribute('aria-label', `${q.name}, last ${shown}: from ${fmtNum(lo, unit, more)} to ${fmtNum(hi, unit, more)} ${unit}`);
    s.append(svg('title', {}), svg('polyline', { points: pts, class: 'line' }));
    s.firstChild.textContent = s.getAttribute('aria-label');
    box.append(s, el('span', { class: 'range muted', text: `${shown}: ${fmtNum(lo, unit, more)} – ${fmtNum(hi, unit, more)} ${unit}` }));
    return box;
  }

  function statusLabel(status) {
    return status === 'online' ? 'Online' : status === 'offline' ? '⚠ Offline' : 'Unknown';
  }

  function renderSensor(s) {
    const card = el('article', { class: `card sensor status-${s.status}`, 'data-sensor': s.id, 'aria-labelledby': `sensor-${s.id}` });
    card.append(el('header', {},
      el('h3', { id: `sensor-${s.id}`, text: s.name || s.id }),
      el('span', { class: `badge ${s.status}`, text: statusLabel(s.status) })));
    card.append(el('p', { class: 'meta muted', text: [s.id, s.driver].filter(Boolean).join(' · ') }));
    if (s.status === 'offline') {
      const why = s.last_error ? `Offline: ${s.last_error}.` : 'Offline.';
      card.append(el('p', { class: 'error', text: `${why} Values below are the last known.` }));
    }
    const list = el('div', { class: 'quantities' });
    for (const q of s.quantities || []) {
      const row = el('section', { class: 'q', 'data-quantity': q.name, 'data-time': q.time || '' });
      row.append(
        el('h4', { text: q.name }),
        el('p', { class: 'reading' },
          el('span', { class: 'value', text: fmtNum(q.value, q.unit) }),
          el('span', { class: 'unit', text: q.unit ? ` ${q.unit}` : '' })),
        el('p', { class: 'when muted', 'data-t': q.time || '', text: q.time ? fmtAgo(q.time) : 'no reading yet' }),
        chart(s.id, q));
      list.append(row);
    }
    if (!(s.quantities || []).length) list.append(el('p', { class: 'muted', text: 'No readings yet.' }));
    card.append(list);
    return card;
  }

  function renderSensors() {
    const box = $('sensors');
    if (!st.sensors.size) {
      box.replaceChildren(el('p', { class: 'muted', text: 'No sensors.' }));
      return;
    }
    box.replaceChildren(...[...st.sensors.values()].map(renderSensor));
  }

  function replaceSensor(id) {
    const s = st.sensors.get(id);
    const old = document.querySelector(`[data-sensor="${CSS.escape(id)}"]`);
    if (!s) return;
    if (old) old.replaceWith(renderSensor(s));
    else renderSensors();
  }

  function onReading(r) {
    const s = st.sensors.get(r.sensor);
    if (!s) return; // a sensor we have not listed: the next reload shows it
    s.quantities = s.quantities || [];
    let q = s.quantities.find((x) => x.name === r.quantity);
    if (!q) s.quantities.push((q = { name: r.quantity }));
    Object.assign(q, { value: r.value, unit: r.unit ?? q.unit, time: r.time });
    if (s.status !== 'online') s.status = 'online';
    addPoint(r.sensor, r.quantity, r.time, r.value);
    replaceSensor(r.sensor);
  }

  function onAvailability(a) {
    const s = st.sensors.get(a.sensor);
    if (!s) return;
    s.status = a.online ? 'online' : 'offline';
    replaceSensor(a.sensor);
  }

  // ---- controllers ----

  function canCommand() {
    return !!(st.me && st.me.can_command);
  }

  function renderController(c) {
    const s = c.state || {};
    const id = c.id;
    const card = el('article', { class: `card controller mode-${s.mode || 'unknown'}`, 'data-controller': id, 'aria-labelledby': `ctl-${id}` });
    card.append(el('header', {},
      el('h3', { id: `ctl-${id}`, text: id }),
      el('span', { class: `badge ${s.fault ? 'offline' : 'online'}`, text: s.fault ? '⚠ Fault' : (s.mode || '?') })));
    card.append(el('p', { class: 'meta muted', text: `${c.input || ''} → ${c.output || ''}` }));
    const unit = (c.unit || inputUnit(c.input)) || '';
    const dl = el('dl', { class: 'state' },
      el('dt', { text: 'Setpoint' }), el('dd', { class: 'sp', text: fmtNum(s.setpoint, unit) }),
      el('dt', { text: 'Input' }), el('dd', { class: 'in', text: s.input == null ? 'no fresh reading' : `${fmtNum(s.input, unit)} ${unit}` }),
      el('dt', { text: 'Output' }), el('dd', { class: 'out', text: percent(s.output) }),
      el('dt', { text: 'Mode' }), el('dd', { class: 'mode', text: s.mode || '–' }));
    if (s.applied) dl.append(el('dt', { text: 'Applied' }), el('dd', { class: 'applied', text: s.applied }));
    card.append(dl);
    if (s.fault) card.append(el('p', { class: 'error fault', text: `Fault: ${s.fault}` }));
    if (canCommand()) card.append(controls(c));
    return card;
  }

  function inputUnit(input) {
    if (!input) return '';
    const [sid, qn] = input.split('/');
    const s = st.sensors.get(sid);
    const q = s && (s.quantities || []).find((x) => x.name === qn);
    return q ? q.unit : '';
  }

  // controls are the setpoint and mode forms, for users who may command.
  function controls(c) {
    const s = c.state || {};
    const id = c.id;
    const box = el('div', { class: 'controls' });
    const msg = el('p', { class: 'cmd-msg', role: 'status', 'aria-live': 'polite', id: `msg-${id}` });

    const spIn = el('input', { id: `sp-${id}`, name: 'setpoint', type: 'number', step: '0.1', inputmode: 'decimal', required: true, value: s.setpoint ?? '' });
    if (typeof s.setpoint_min === 'number') spIn.min = s.setpoint_min;
    if (typeof s.setpoint_max === 'number') spIn.max = s.setpoint_max;
    const spForm = el('form', { class: 'cmd setpoint', novalidate: true, 'aria-describedby': `msg-${id}` },
      el('label', { for: `sp-${id}`, text: 'Setpoint' }),
      spIn,
      el('button', { type: 'submit', text: 'Set' }));
    spForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = spIn.valueAsNumber;
      if (!isFinite(v)) { msg.textContent = 'Enter a number.'; return; }
      command(id, { setpoint: v }, msg, spForm);
    });

    const modeSel = el('select', { id: `mode-${id}`, name: 'mode' });
    for (const m of ['auto', 'manual', 'off']) modeSel.append(el('option', { value: m, text: m, selected: s.mode === m }));
    const outIn = el('input', { id: `out-${id}`, name: 'output', type: 'number', min: 0, max: 100, step: 1, inputmode: 'numeric', value: typeof s.output === 'number' ? Math.round(s.output * 100) : '' });
    const outP = el('span', { class: 'outfield' }, el('label', { for: `out-${id}`, text: 'Output %' }), outIn);
    const syncOut = () => { outP.hidden = modeSel.value !== 'manual'; outIn.required = modeSel.value === 'manual'; };
    modeSel.addEventListener('change', syncOut);
    syncOut();
    const modeForm = el('form', { class: 'cmd mode', novalidate: true, 'aria-describedby': `msg-${id}` },
      el('label', { for: `mode-${id}`, text: 'Mode' }), modeSel, outP,
      el('button', { type: 'submit', text: 'Apply' }));
    modeForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const cmd = { mode: modeSel.value };
      if (modeSel.value === 'manual') {
        const o = outIn.valueAsNumber;
        if (!isFinite(o)) { msg.textContent = 'Enter the output in %.'; return; }
        cmd.output = o / 100;
      }
      command(id, cmd, msg, modeForm);
    });

    box.append(spForm, modeForm, msg);
    return box;
  }

  // stateIn counts a state of controller id that the event stream
  // brought, for command.
  function stateIn(id) {
    st.statesIn.set(id, (st.statesIn.get(id) || 0) + 1);
  }

  async function command(id, cmd, msg, form) {
    for (const b of form.querySelectorAll('button')) b.disabled = true;
    msg.textContent = 'Sending…';
    msg.className = 'cmd-msg';
    const statesBefore = st.statesIn.get(id) || 0;
    try {
      const r = await call('PATCH', `/controllers/${encodeURIComponent(id)}`, cmd);
      const c = st.controllers.get(id);
      // The answer is the state right after this command. When the event
      // stream brought a state while the answer was on its way, the stream
      // is live and sends states in order, so it brings this command's
      // state or a newer one too: the answer must not replace what it
      // brought, which may be newer (another operator's setpoint, shown
      // and then undone by this older answer until the next change).
      if (c && r && r.state && (st.statesIn.get(id) || 0) === statesBefore) c.state = r.state;
      replaceController(id, 'Done.');
    } catch (e) {
      msg.textContent = e.status === 403 ? `Not allowed: ${e.message}` : `Refused: ${e.message}`;
      msg.className = 'cmd-msg error';
    } finally {
      for (const b of form.querySelectorAll('button')) b.disabled = false;
    }
  }

  function renderControllers() {
    const box = $('controllers');
    if (!st.controllers.size) {
      box.replaceChildren(el('p', { class: 'muted', text: 'No control loops.' }));
      return;
    }
    box.replaceChildren(...[...st.controllers.values()].map(renderController));
  }

  // replaceController redraws a card unless the user is typing in it:
  // then only its state list changes, so an event does not eat the input.
  function replaceController(id, note) {
    const c = st.controllers.get(id);
    const old = document.querySelector(`[data-controller="${CSS.escape(id)}"]`);
    if (!c) return;
    if (!old) { renderControllers(); return; }
    const fresh = renderController(c);
    const busy = old.contains(document.activeElement) && document.activeElement.matches('input, select');
    if (busy) {
      old.querySelector('dl.state').replaceWith(fresh.querySelector('dl.state'));
      old.querySelector('header').replaceWith(fresh.querySelector('header'));
      if (note) { const m = old.querySelector('.cmd-msg'); if (m) m.textContent = note; }
      return;
    }
    const focusedId = old.contains(document.activeElement) ? document.activeElement.id : '';
    old.replaceWith(fresh);
    if (note) { const m = fresh.querySelector('.cmd-msg'); if (m) m.textContent = note; }
    if (focusedId) { const f = document.getElementById(focusedId); if (f) f.focus(); }
  }

  function onController(ev) {
    const c = st.controllers.get(ev.id);
    if (!c) return;
    c.state = ev.state;
    stateIn(ev.id);
    replaceController(ev.id);
  }

  // ---- uplink ----

  function renderUplink() {
    const u = st.uplink;
    const box = $('uplink');
    if (!u) { box.replaceChildren(el('p', { class: 'muted', text: 'Unknown.' })); return; }
    if (!u.enabled) {
      box.className = 'panel uplink disabled';
      box.replaceChildren(el('p', { class: 'muted', text: 'No uplink configured: readings stay on this gateway.' }));
      return;
    }
    box.className = `panel uplink ${u.connected ? 'up' : 'down'}`;
    const row = (k, v, cls) => [el('dt', { text: k }), el('dd', { class: cls, text: v })];
    box.replaceChildren(
      el('p', {}, el('span', { class: `badge ${u.connected ? 'online' : 'offline'}`, 'data-uplink': u.connected ? 'connected' : 'disconnected', text: u.connected ? 'Connected' : '⚠ Disconnected' })),
      el('dl', { class: 'state' },
        ...row('Backlog', `${u.backlog_messages ?? 0} messages, ${fmtBytes(u.backlog_bytes ?? 0)}`, 'backlog'),
        ...row('Oldest unsent', u.backlog_messages ? fmtAge(u.oldest_age_s) : 'none', 'oldest'),
        ...row('Last acknowledged', u.last_puback ? fmtAgo(u.last_puback) || String(u.last_puback) : 'never', 'puback'),
        ...row('Dropped', String(u.dropped ?? 0), 'dropped'),
        ...row('Dead letters', String(u.dead_letters ?? 0), 'dead')));
  }

  // ---- loading and the event stream ----

  async function loadAll() {
    const [sensors, controllers, uplink] = await Promise.all([
      call('GET', '/sensors'), call('GET', '/controllers'), call('GET', '/uplink').catch((e) => (e.status === 404 ? null : Promise.reject(e))),
    ]);
    st.sensors = new Map((sensors.sensors || []).map((s) => [s.id, s]));
    st.controllers = new Map((controllers.controllers || []).map((c) => [c.id, c]));
    st.uplink = uplink;
    st.history = new Map();
    const hist = [];
    for (const s of st.sensors.values()) {
      for (const q of s.quantities || []) {
        const path = `/sensors/${encodeURIComponent(s.id)}/history?quantity=${encodeURIComponent(q.name)}&since=${HISTORY_SINCE}`;
        hist.push(call('GET', path).then((h) => {
          for (const p of h.points || []) addPoint(s.id, q.name, p.t, p.v);
        }, () => {})); // no history: the chart fills from the stream
      }
    }
    await Promise.all(hist);
    for (const s of st.sensors.values()) for (const q of s.quantities || []) addPoint(s.id, q.name, q.time, q.value);
    renderSensors();
    renderControllers();
    renderUplink();
  }

  // reload asks who the user is, loads everything and (re)opens the stream.
  function reload() {
    if (st.loading) return st.loading;
    st.loading = (async () => {
      closeStream();
      try {
        st.me = await call('GET', '/me');
        renderMe();
        await loadAll();
        showError('');
        openStream();
      } catch (e) {
        if (e.status === 401) {
          st.me = null;
          renderMe();
          setConn('login', 'Sign in to see the gateway');
        } else {
          showError(`Could not load: ${e.message}`);
          retryLater();
        }
      }
    })().finally(() => { st.loading = null; });
    return st.loading;
  }

  function closeStream() {
    clearTimeout(st.retryTimer);
    if (st.es) { st.es.close(); st.es = null; }
  }

  function retryLater() {
    clearTimeout(st.retryTimer);
    setConn('down', `Disconnected; retrying in ${Math.round(st.retryMs / 1000)} s`);
    st.retryTimer = setTimeout(reload, st.retryMs);
    st.retryMs = Math.min(st.retryMs * 2, RETRY_MAX_MS);
  }

  function openStream() {
    const es = new EventSource(`${API}/events`);
    st.es = es;
    let dropped = false;
    setConn('connecting', 'Connecting…');
    const on = (name, fn) => es.addEventListener(name, (ev) => {
      let d;
      try { d = JSON.parse(ev.data); } catch (e) { return; }
      fn(d);
    });
    on('reading', onReading);
    on('availability', onAvailability);
    on('controller', onController);
    on('uplink', (u) => { st.uplink = u; renderUplink(); });
    es.addEventListener('open', () => {
      st.retryMs = RETRY_MIN_MS;
      setConn('live', 'Live');
      // After a drop, what happened in between is only in the GET routes.
      if (dropped) { dropped = false; loadAll().catch((e) => showError(`Could not load: ${e.message}`)); }
    });
    es.addEventListener('error', () => {
      if (st.es !== es) return;
      dropped = true;
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (an error answer such as 401): start over,
        // which also finds out whether we must sign in.
        es.close();
        st.es = null;
        retryLater();
      } else {
        setConn('down', 'Reconnecting…');
      }
    });
  }

  // Refresh the "n s ago" texts.
  function tick() {
    for (const e of document.querySelectorAll('.when[data-t]')) if (e.dataset.t) e.textContent = fmtAgo(e.dataset.t);
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('login-form').addEventListener('submit', login);
    $('login-open').addEventListener('click', () => openLogin(''));
    $('login-cancel').addEventListener('click', closeLogin);
    $('logout').addEventListener('click', logout);
    setInterval(tick, 5000);
    reload();
  });
})();
