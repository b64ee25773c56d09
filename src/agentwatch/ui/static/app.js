// agentwatch dashboard: the little the pages need beyond HTML.
// Selectors marked data-autosubmit apply on change; links and forms work without this file.
document.addEventListener("change", (event) => {
  const target = event.target;
  if (target instanceof HTMLSelectElement && target.hasAttribute("data-autosubmit") && target.form) {
    target.form.requestSubmit();
  }
});
// A session opened from an alert or a cluster example: open the spans of the trace it names.
window.addEventListener("DOMContentLoaded", () => {
  const anchor = window.location.hash.startsWith("#trace-") ? document.getElementById(window.location.hash.slice(1)) : null;
  if (anchor) {
    anchor.querySelectorAll("details.span.failed").forEach((d) => { d.open = true; });
    anchor.scrollIntoView({ block: "start" });
  }
});
