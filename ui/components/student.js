// The student's id, kept in this browser's localStorage, a Streamlit components v2 module (ui/training.py).
// data: {current}: the id the session uses now (at first its own, made by the server).
//
// Training runs belong to this id, not to a tab: a refresh, a second tab or the browser opened again
// tomorrow finds the same student. A browser that has no id yet keeps the session's (no rerun at all);
// one that has another tells Python once (setStateValue "id": one rerun), and the session adopts it,
// handing over the runs it started under its own. A browser that keeps no site data stays the session.
//
// Lifecycle (components v2): the default export may be called again with new data; it is idempotent
// (tells the id once per session) and leaves nothing to clean up.

const STORE = "cnnviz.student.v1";
const ID = /^[A-Za-z0-9_-]{16,64}$/;

const registry = (window.__cnnvizStudent ??= { told: null });

function stored() {
  try {
    return window.localStorage.getItem(STORE);
  } catch {
    return null;
  }
}

function keep(id) {
  try {
    window.localStorage.setItem(STORE, id);
    return true;
  } catch {
    return false;
  }
}

export default function student({ data, setStateValue }) {
  const current = ID.test(data?.current ?? "") ? data.current : null;
  let id = stored();
  if (!ID.test(id ?? "")) {
    if (!current || !keep(current)) return; // nothing to keep, or no site data: the session's id stays
    id = current;
  }
  // Told once per session (a session's current id): a server restart makes a new session on the same page.
  if (id === current || registry.told === `${current} ${id}`) return;
  registry.told = `${current} ${id}`;
  setStateValue("id", id);
}
