// qwallet admin console: confirmation prompts and copy buttons. No dependencies.
"use strict";
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form instanceof HTMLFormElement ? form.dataset.confirm : undefined;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
document.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
  if (!button) return;
  const secret = button.parentElement.querySelector("[data-secret]");
  if (!secret) return;
  try {
    await navigator.clipboard.writeText(secret.textContent.trim());
    button.textContent = "Copied";
  } catch (_error) {
    const range = document.createRange();
    range.selectNodeContents(secret);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = "Selected — press Ctrl+C";
  }
});
