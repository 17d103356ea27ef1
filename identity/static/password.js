// The password fields of the hosted pages (templates/_password_fields.html), improved when
// JavaScript runs: "generate" fills both fields from /api/v1/password/generate without a
// round trip, "copy" puts the password on the clipboard, and a strength line follows typing
// (/api/v1/password/check) with the user's email and name, as the form's own check has them.
// A generated password the contextual check refuses (it can spell part of the name) is
// replaced by another, a few times at most. Without this file the page still works: "generate" then posts
// the form and the server answers with a suggestion.
"use strict";

(function () {
  const CHECK_DELAY_MS = 400;
  const GENERATE_TRIES = 3;

  function enhance(box) {
    const form = box.closest("form");
    const password = form.querySelector("input[name=password]");
    const confirm = form.querySelector("input[name=password_confirm]");
    const generate = box.querySelector("[data-password-generate]");
    const copy = box.querySelector("[data-password-copy]");
    const suggestion = box.querySelector("[data-password-suggestion]");
    const shown = suggestion.querySelector("input");
    const strength = box.querySelector("[data-password-strength]");
    const language = document.documentElement.lang || "en";
    let timer = null;

    copy.hidden = false;

    generate.addEventListener("click", async (event) => {
      event.preventDefault();
      for (let tries = 0; tries < GENERATE_TRIES; tries++) {
        const response = await fetch(`${box.dataset.api}/generate`, { credentials: "omit" });
        if (!response.ok) break;
        const { password: generated } = await response.json();
        password.value = confirm.value = shown.value = generated;
        suggestion.hidden = false;
        const verdict = await check();
        if (!verdict || verdict.accepted) return;
      }
      form.requestSubmit(generate);  // the server's suggestion knows the user's details
    });

    copy.addEventListener("click", async () => {
      const text = password.value || shown.value;
      if (!text) return;
      await navigator.clipboard.writeText(text);
      strength.textContent = copy.dataset.copied;
    });

    // The verdict shown, or null when there is none (rate limited or offline: the server
    // checks on submit anyway).
    async function check() {
      if (!password.value) {
        strength.textContent = "";
        return null;
      }
      const nameField = form.querySelector("input[name=name]");
      const response = await fetch(`${box.dataset.api}/check`, {
        method: "POST",
        credentials: "omit",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          password: password.value,
          email: box.dataset.forEmail,
          name: nameField ? nameField.value : box.dataset.forName,
        }),
      });
      if (!response.ok) return null;
      const verdict = await response.json();
      strength.textContent = verdict.accepted
        ? strength.dataset.strong
        : verdict.reasons.map((r) => r.messages[language] || r.messages.en).join(" ");
      return verdict;
    }

    password.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(check, CHECK_DELAY_MS);
    });
  }

  document.querySelectorAll("[data-password-fields]").forEach(enhance);
})();
