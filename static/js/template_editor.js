// Live SMS segment counter and preview for the template editor.
// Mirrors campaigns/segments.py and campaigns/rendering.py; the server re-checks on save.
(function () {
  const GSM_BASIC = new Set(
    Array.from(
      "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
    )
  );
  const GSM_EXTENDED = new Set(Array.from("^{}\\[~]|€\f"));

  function countSegments(text) {
    const chars = Array.from(text);
    const gsm = chars.every((c) => GSM_BASIC.has(c) || GSM_EXTENDED.has(c));
    const [single, multi] = gsm ? [160, 153] : [70, 67];
    const units = gsm
      ? chars.reduce((n, c) => n + (GSM_EXTENDED.has(c) ? 2 : 1), 0)
      : text.length; // UTF-16 code units, as UCS-2 counts them
    const segments = units === 0 ? 0 : units <= single ? 1 : Math.ceil(units / multi);
    const per = units <= single ? single : multi;
    return {
      encoding: gsm ? "GSM-7" : "UCS-2",
      characters: chars.length,
      segments,
      remaining: Math.max(segments, 1) * per - units,
    };
  }

  const sample = JSON.parse(document.getElementById("sample-recipient")?.textContent || "{}");
  const escapeHtml = (s) =>
    s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;" })[c]);

  // Unparseable text previews as typed; the save reports the exact spot.
  function render(text, html) {
    return text.replace(/\{\{([^{}]*)\}\}/g, (whole, inner) => {
      const [name, fallback = ""] = inner.split("|");
      const value = String(sample[name.trim()] || "").trim() || fallback.trim();
      return html ? escapeHtml(value) : value;
    });
  }

  function updateCounter(field) {
    const output = document.querySelector(field.dataset.smsCounter);
    if (!output) return;
    const c = countSegments(render(field.value, false));
    output.textContent =
      `${c.characters} characters · ${c.segments} segment${c.segments === 1 ? "" : "s"} ` +
      `(${c.encoding}) · ${c.remaining} left in this segment (for the sample recipient)`;
  }

  function updatePreview(field) {
    const target = document.querySelector(field.dataset.previewTarget);
    if (!target) return;
    if (field.name === "html_body") {
      // A sandboxed frame without allow-scripts: the preview can never run script.
      let frame = target.querySelector("iframe");
      if (!frame) {
        frame = document.createElement("iframe");
        frame.setAttribute("sandbox", "");
        frame.className = "email-preview";
        frame.title = "Email preview";
        target.replaceChildren(frame);
      }
      frame.srcdoc = render(field.value, true);
    } else {
      target.textContent = render(field.value, false);
    }
  }

  function refresh(field) {
    if (field.matches("[data-sms-counter]")) updateCounter(field);
    if (field.matches("[data-preview-source]")) updatePreview(field);
  }

  document.addEventListener("input", (event) => {
    if (event.target.matches("[data-sms-counter], [data-preview-source]")) refresh(event.target);
  });
  document.querySelectorAll("[data-sms-counter], [data-preview-source]").forEach(refresh);
})();
