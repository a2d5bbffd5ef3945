// The presenter's side of a room (ui/room.py), a Streamlit components v2 module. data.mode:
//
// - "present" {code, token, link, heartbeat_ms, app_params}: post where this page is to
//   /api/rooms/CODE — on load, whenever the URL changes (Streamlit writes it on a page switch or a
//   new setting; steppers write their step), on every `cnnviz:stepped` event, and every heartbeat_ms
//   (the room closes after cnnviz.rooms.IDLE_SECONDS without one). No script rerun for any of it. The line shows the
//   room's code and the students' link. {code, token} is kept in this tab's sessionStorage.
// - "resume": a new session in a tab that presented a room (a reload, a slide's link opened in the
//   same tab): if sessionStorage names a room that is still open, hand it to Python (one rerun).
//   Shows nothing, does nothing in every other tab.
//
// Lifecycle (components v2): the function runs again on the same element when its data changes, and
// only the last cleanup runs, on unmount. One publisher per page lives on window: a page switch may
// mount the new page's element before the old one is unmounted; the publisher stops when its last
// element goes.

const STORAGE_KEY = "cnnviz.room.presenting";
const URL_CHECK_MS = 200; // a Streamlit-written URL (pushState) fires no event: look at it this often
const RETRY_MS = 2000;

const registry = (window.__cnnvizRoomPresenter ??= { active: null, resumeAsked: null });

function saved() {
  try {
    const room = JSON.parse(window.sessionStorage.getItem(STORAGE_KEY));
    return room && typeof room.code === "string" && typeof room.token === "string" ? room : null;
  } catch {
    return null;
  }
}

function save(code, token) {
  try {
    window.sessionStorage.setItem(STORAGE_KEY, JSON.stringify({ code, token }));
  } catch {
    /* storage off: a reload then ends the presenting, nothing else */
  }
}

function forget(code) {
  try {
    if (saved()?.code === code) window.sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    /* nothing kept */
  }
}

function paramName(part) {
  const name = part.split("=", 1)[0].replace(/\+/g, " ");
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}

// Where the page is, for the room: its path; its query without the app-wide parameters (each visitor's
// own) and with every stepper's parameter at the step it last reported (its own URL write comes a
// little later); the stepper moved last.
function currentLocation(pub) {
  const path = window.location.pathname;
  if (path !== pub.path) {
    pub.path = path;
    pub.steppers.clear();
    pub.lastStep = null;
  }
  const replaced = new Set([...pub.appParams, ...pub.steppers.keys()]);
  const parts = window.location.search.slice(1).split("&").filter((part) => part && !replaced.has(paramName(part)));
  // Step 0 is a page's default, which its links leave out (as the steppers and Python's UrlState do).
  for (const [param, { step }] of pub.steppers) if (step !== 0) parts.push(`${encodeURIComponent(param)}=${step}`);
  return { path, query: parts.join("&"), step: pub.lastStep };
}

function show(pub, state) {
  pub.state = state;
  for (const root of pub.roots) {
    const line = root.querySelector("[data-part=room-line]");
    if (!line) continue;
    line.hidden = false;
    line.dataset.state = state;
    const text = line.querySelector("[data-part=room-text]");
    if (state === "ended") text.textContent = `Room ${pub.code} has ended.`;
    else if (state === "offline") text.textContent = `Room ${pub.code} · not reaching the server, retrying…`;
    else text.textContent = `Room ${pub.code} · students open ${pub.link}`;
    text.dataset.code = pub.code;
  }
}

async function publish(pub, heartbeat = false) {
  if (pub.stopped || Date.now() < pub.retryAt) return;
  const body = JSON.stringify({ token: pub.token, ...currentLocation(pub) });
  if (!heartbeat && body === pub.lastSent) return;
  if (pub.inFlight) {
    pub.pending = true; // sent once this one is answered: the latest location wins
    return;
  }
  pub.inFlight = true;
  try {
    const response = await fetch(`/api/rooms/${pub.code}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body,
      cache: "no-store",
    });
    if (response.status === 403 || response.status === 404) return end(pub);
    if (response.ok) {
      pub.lastSent = body;
      show(pub, "live");
    } else {
      pub.retryAt = Date.now() + RETRY_MS;
      show(pub, "offline");
    }
  } catch {
    pub.retryAt = Date.now() + RETRY_MS;
    show(pub, "offline");
  } finally {
    pub.inFlight = false;
  }
  if (pub.pending) {
    pub.pending = false;
    publish(pub);
  }
}

function start(data) {
  const pub = {
    code: data.code,
    token: data.token,
    link: data.link,
    appParams: new Set(data.app_params),
    steppers: new Map(), // param -> {key, step}: the steppers of this path
    lastStep: null,
    path: null,
    roots: new Set(),
    lastSent: null,
    inFlight: false,
    pending: false,
    retryAt: 0,
    stopped: false,
    state: "live",
  };
  pub.onStepped = (event) => {
    const { key, param, step } = event.detail ?? {};
    if (typeof key !== "string" || typeof param !== "string" || !Number.isInteger(step)) return;
    currentLocation(pub); // a step on a new page forgets the last page's steppers first
    pub.steppers.set(param, { key, step });
    pub.lastStep = { key, param, step };
    publish(pub);
  };
  // Back from another window (the slides): say at once that the page is there, timers may have slept.
  pub.onVisible = () => document.visibilityState === "visible" && publish(pub, true);
  window.addEventListener("cnnviz:stepped", pub.onStepped);
  document.addEventListener("visibilitychange", pub.onVisible);
  pub.urlTimer = window.setInterval(() => publish(pub), URL_CHECK_MS);
  pub.beatTimer = window.setInterval(() => publish(pub, true), data.heartbeat_ms);
  save(pub.code, pub.token);
  publish(pub);
  return pub;
}

function stop(pub) {
  if (!pub || pub.stopped) return;
  pub.stopped = true;
  window.removeEventListener("cnnviz:stepped", pub.onStepped);
  document.removeEventListener("visibilitychange", pub.onVisible);
  window.clearInterval(pub.urlTimer);
  window.clearInterval(pub.beatTimer);
  if (registry.active === pub) registry.active = null;
}

function end(pub) {
  stop(pub);
  forget(pub.code);
  show(pub, "ended");
}

function present(data, root) {
  let pub = registry.active;
  if (!pub || pub.code !== data.code || pub.token !== data.token) {
    stop(pub);
    pub = registry.active = start(data);
  }
  pub.roots.add(root);
  show(pub, pub.state);
  return () => {
    pub.roots.delete(root);
    if (pub.roots.size === 0) stop(pub);
  };
}

function resume(setStateValue) {
  const room = saved();
  if (!room || registry.resumeAsked === room.code) return; // asked once per page load
  registry.resumeAsked = room.code;
  fetch(`/api/rooms/${encodeURIComponent(room.code)}?since=-1`, { cache: "no-store" })
    .then((response) => {
      if (response.ok) setStateValue("resume", room);
      else if (response.status === 404) forget(room.code);
    })
    .catch(() => {});
}

export default function roomPresenter({ data, parentElement, setStateValue }) {
  if (data.mode === "present") return present(data, parentElement);
  const line = parentElement.querySelector("[data-part=room-line]");
  if (line) line.hidden = true;
  resume(setStateValue);
  return () => {};
}
