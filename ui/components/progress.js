// A student's progress on the lessons' "Your turn" questions (ui/exercises.py), a Streamlit components v2
// module. data: {lesson, event}. The counts live in this browser's localStorage, so they survive a reload
// and a new session; no script rerun is ever asked for.
//
// - event {id, lesson, kind, seed, right_first_time}: one answered question, told once by Python. The
//   function runs again whenever data changes, and again with the same data when the element is mounted
//   anew (back on the page in the same session): the ids already counted are kept, so an event counts once.
// - The line shows this lesson's counts. Every instance on the page (the hall's question and the page's
//   own) redraws on a "cnnviz:progress" window event, and on a "storage" event from another tab.
//
// Lifecycle (components v2): the default export may be called again on the same element, and only the
// last cleanup runs, on unmount: one instance per parentElement (a WeakMap), its listener replaced.

const STORE = "cnnviz.progress.v1";
const SEEN_LIMIT = 500; // ids remembered; far more than one browser answers between two of the same
const ID = /^[0-9a-f]{32}$/;
const LESSON = /^[0-9A-Za-z_]{1,60}$/;

const registry = (window.__cnnvizProgress ??= { byRoot: new WeakMap(), memory: null });

function empty() {
  return { lessons: {}, seen: [] };
}

function load() {
  if (registry.memory) return registry.memory; // this browser keeps no site data: counts for this page load
  try {
    const stored = JSON.parse(window.localStorage.getItem(STORE));
    if (stored && typeof stored.lessons === "object" && Array.isArray(stored.seen)) return stored;
  } catch {
    /* unreadable: start again */
  }
  return empty();
}

function save(progress) {
  try {
    window.localStorage.setItem(STORE, JSON.stringify(progress));
  } catch {
    registry.memory = progress;
  }
}

function count(n) {
  return Number.isInteger(n) && n > 0 ? n : 0;
}

function record(event) {
  if (!event || !ID.test(event.id ?? "") || !LESSON.test(event.lesson ?? "")) return;
  const progress = load();
  if (progress.seen.includes(event.id)) return;
  progress.seen = [...progress.seen, event.id].slice(-SEEN_LIMIT);
  const lesson = progress.lessons[event.lesson] ?? {};
  progress.lessons[event.lesson] = {
    answered: count(lesson.answered) + 1,
    right: count(lesson.right) + (event.right_first_time === true ? 1 : 0),
  };
  save(progress);
  window.dispatchEvent(new CustomEvent("cnnviz:progress"));
}

function render(instance) {
  const lesson = load().lessons[instance.lesson] ?? {};
  const answered = count(lesson.answered);
  const right = count(lesson.right);
  const line = instance.root.querySelector("[data-part=progress]");
  if (!line) return;
  line.dataset.answered = String(answered);
  line.dataset.right = String(right);
  line.querySelector("[data-part=answered]").textContent = String(answered);
  line.querySelector("[data-part=right]").textContent = String(right);
  line.querySelector("[data-part=answered-word]").textContent = answered === 1 ? "question answered" : "questions answered";
}

export default function progress({ data, parentElement }) {
  let instance = registry.byRoot.get(parentElement);
  if (!instance) {
    instance = { root: parentElement, lesson: "", redraw: null };
    registry.byRoot.set(parentElement, instance);
  }
  instance.lesson = LESSON.test(data?.lesson ?? "") ? data.lesson : "";
  record(data?.event);
  if (instance.redraw) {
    window.removeEventListener("cnnviz:progress", instance.redraw);
    window.removeEventListener("storage", instance.redraw);
  }
  instance.redraw = () => render(instance);
  window.addEventListener("cnnviz:progress", instance.redraw);
  window.addEventListener("storage", instance.redraw);
  render(instance);
  return () => {
    window.removeEventListener("cnnviz:progress", instance.redraw);
    window.removeEventListener("storage", instance.redraw);
    registry.byRoot.delete(parentElement);
  };
}
