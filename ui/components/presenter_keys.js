// The presenter view's keys: the lecture tour goes on with a clicker's Page Down / Page Up, with
// → and ← on pages without a stepper, and when a stepper reports that it is at its last (or first)
// step ("cnnviz:edge"); F toggles full screen. The move itself is made by Python (a trigger value
// "go" = "next" | "previous"), so the session, and a room's presenter token, stay.
//
// Lifecycle (Streamlit 1.64 components v2): the default export may be called again on the same
// element when its data changes, and only the last returned cleanup runs, on unmount. One
// listener per page lives on window; it is replaced, never doubled.

const KEY_OWNERS = "input:not([type=checkbox], [type=button], [type=submit], [type=reset]), " +
  "textarea, select, [role=textbox], [role=searchbox], [role=combobox], [role=listbox], " +
  "[role=slider], [role=spinbutton], [role=radiogroup], [role=menu], [role=grid], [role=tablist]";

function ownsKeys(event) {
  const origin = event.composedPath()[0] ?? event.target;
  return origin instanceof Element && (origin.isContentEditable || origin.closest(KEY_OWNERS) !== null);
}

function toggleFullscreen() {
  if (document.fullscreenElement) document.exitFullscreen?.();
  else document.documentElement.requestFullscreen?.().catch(() => {});
}

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  const state = (window.__cnnvizPresenter ??= { detach: null });
  state.detach?.();

  const go = (direction) => setTriggerValue("go", direction);
  const onKey = (event) => {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey || ownsKeys(event)) return;
    let direction = null;
    if (event.key === "PageDown") direction = "next";
    else if (event.key === "PageUp") direction = "previous";
    else if (!data.has_stepper && event.key === "ArrowRight") direction = "next";
    else if (!data.has_stepper && event.key === "ArrowLeft") direction = "previous";
    else if (event.key === "f" || event.key === "F") {
      event.preventDefault();
      toggleFullscreen();
      return;
    }
    if (direction) {
      event.preventDefault();
      go(direction);
    }
  };
  const onEdge = (event) => go(event.detail?.direction === "previous" ? "previous" : "next");
  window.addEventListener("keydown", onKey);
  window.addEventListener("cnnviz:edge", onEdge);

  const button = parentElement.querySelector("button[data-part=fullscreen]");
  if (button) button.onclick = toggleFullscreen;

  state.detach = () => {
    window.removeEventListener("keydown", onKey);
    window.removeEventListener("cnnviz:edge", onEdge);
    state.detach = null;
  };
  return () => state.detach?.();
}
