// Small progressive enhancements; every page works without this file.
document.addEventListener("change", (event) => {
  const el = event.target;
  if (el.matches("select[data-autosubmit]") && el.value) el.form.requestSubmit();
});
// Reveal a block while its checkbox is ticked: <input data-reveals="#id">.
function syncReveal(box) {
  const target = document.querySelector(box.dataset.reveals);
  if (target) target.hidden = !box.checked;
}
document.addEventListener("change", (event) => {
  if (event.target.matches("[data-reveals]")) syncReveal(event.target);
});
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-reveals]").forEach(syncReveal);
});
