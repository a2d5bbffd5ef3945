// A student's side of a room (ui/room.py), a Streamlit components v2 module. data: {code, app_params}.
//
// Long-polls GET /api/rooms/CODE?since=<version it has> and goes where the presenter is:
// - the same page and URL state, only the step moved: `cnnviz:goto` {key, step} on window (the page's
//   steppers listen for it); no reload, no script rerun;
// - another page or other settings: it opens that page with room=CODE (a new page load).
// A closed or expired room (404) is said on the line, and polling stops. The room's content is the
// presenter's input: it only ever opens a relative path of this app, and is written with textContent.
//
// Lifecycle (components v2): one follower per page lives on window; it stops when its last element is
// unmounted (Leave, a page switch).

const NAVIGATED_KEY = "cnnviz.room.navigated"; // the room version this tab last opened a page for
const PATH = /^\/(?:[A-Za-z0-9_-]+(?:\/[A-Za-z0-9_-]+)*)?$/; // same as cnnviz.rooms.PATH
const QUERY = /^[A-Za-z0-9\-._~!$&'()*+,;=:@/?%[\]]*$/; // same as cnnviz.rooms.QUERY
const CODE = /^[A-Z]{5}$/;

const registry = (window.__cnnvizRoomFollower ??= { active: null });

function paramName(part) {
  const name = part.split("=", 1)[0].replace(/\+/g, " ");
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}

// A query's parameters as sorted "name\0value" strings, without `ignored` names: two queries that
// differ only in order or encoding (%2C or ,) are the same state.
function canonical(query, ignored) {
  const pairs = [];
  for (const [name, value] of new URLSearchParams(query)) if (!ignored.has(name)) pairs.push(`${name}\0${value}`);
  return pairs.sort().join("&");
}

// The presenter's page for this follower: a path of this app plus its query and room=CODE; null for
// anything that is not a same-origin relative link.
function target(follower, room) {
  if (typeof room.path !== "string" || !PATH.test(room.path)) return null;
  if (typeof room.query !== "string" || !QUERY.test(room.query)) return null;
  const parts = room.query.split("&").filter((part) => part && !follower.appParams.has(paramName(part)));
  parts.push(`room=${follower.code}`);
  const url = new URL(`${room.path}?${parts.join("&")}`, window.location.origin);
  return url.origin === window.location.origin ? url.pathname + url.search : null;
}

function validStep(step) {
  if (!step || typeof step.key !== "string" || typeof step.param !== "string") return null;
  return Number.isInteger(step.step) && step.step >= 0 ? step : null;
}

function follow(follower, room) {
  const link = target(follower, room);
  if (link === null) return; // nothing published yet, or nothing this follower would open
  const step = validStep(room.step);
  const ignored = new Set([...follower.appParams, ...(step ? [step.param] : [])]);
  const here = canonical(window.location.search, ignored);
  if (room.path === window.location.pathname && canonical(room.query, ignored) === here) {
    if (step) window.dispatchEvent(new CustomEvent("cnnviz:goto", { detail: { key: step.key, step: step.step } }));
    return;
  }
  // Open each version at most once: a page that writes its URL a little differently from the
  // presenter's must not reload for ever.
  const mark = `${follower.code}:${room.version}`;
  try {
    if (window.sessionStorage.getItem(NAVIGATED_KEY) === mark) return;
    window.sessionStorage.setItem(NAVIGATED_KEY, mark);
  } catch {
    /* no storage: no guard */
  }
  stop(follower, false);
  window.location.assign(link);
}

function show(follower, state) {
  follower.state = state;
  const texts = {
    connecting: `Following room ${follower.code} · connecting…`,
    live: `Following room ${follower.code} · live`,
    offline: `Following room ${follower.code} · reconnecting…`,
    ended: `Room ${follower.code} has ended. You can explore on your own.`,
  };
  for (const root of follower.roots) {
    const line = root.querySelector("[data-part=room-line]");
    if (!line) continue;
    line.dataset.state = state;
    line.querySelector("[data-part=room-text]").textContent = texts[state];
  }
}

const sleep = (ms) => new Promise((resolve) => window.setTimeout(resolve, ms));

async function poll(follower) {
  let backoff = 0;
  while (!follower.stopped) {
    if (backoff) await sleep(backoff);
    if (follower.stopped) return;
    let response;
    try {
      response = await fetch(`/api/rooms/${follower.code}?since=${follower.version}`, {
        cache: "no-store",
        signal: follower.abort.signal,
      });
    } catch {
      if (follower.stopped) return;
      show(follower, "offline");
      backoff = Math.min(5000, backoff ? backoff * 2 : 500);
      continue;
    }
    if (response.status === 404) {
      show(follower, "ended");
      stop(follower, false);
      return;
    }
    if (response.status === 204) {
      // No change within the server's wait: ask again.
      backoff = 0;
      show(follower, "live");
      continue;
    }
    let room = null;
    try {
      room = response.ok ? await response.json() : null;
    } catch {
      room = null;
    }
    if (!room || !Number.isInteger(room.version)) {
      show(follower, "offline");
      backoff = Math.min(5000, backoff ? backoff * 2 : 1000);
      continue;
    }
    backoff = 0;
    follower.version = room.version;
    show(follower, "live");
    if (!follower.stopped) follow(follower, room);
  }
}

function start(data) {
  const follower = {
    code: data.code,
    appParams: new Set(data.app_params),
    version: 0,
    roots: new Set(),
    abort: new AbortController(),
    stopped: false,
    state: "connecting",
  };
  poll(follower);
  return follower;
}

// `left`: the follower stops because the student left (Leave, another page): a later rejoin must be
// free to open the presenter's page again, even the same version.
function stop(follower, left) {
  if (!follower || follower.stopped) return;
  follower.stopped = true;
  follower.abort.abort();
  if (registry.active === follower) registry.active = null;
  if (left) {
    try {
      window.sessionStorage.removeItem(NAVIGATED_KEY);
    } catch {
      /* nothing kept */
    }
  }
}

export default function roomFollower({ data, parentElement }) {
  if (!CODE.test(data.code ?? "")) return () => {};
  let follower = registry.active;
  if (!follower || follower.code !== data.code) {
    stop(follower, true);
    follower = registry.active = start(data);
  }
  follower.roots.add(parentElement);
  show(follower, follower.state);
  return () => {
    follower.roots.delete(parentElement);
    if (follower.roots.size === 0) stop(follower, true);
  };
}
