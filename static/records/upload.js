// The upload's progress bar: htmx reports the bytes sent (htmx:xhr:progress); once sent, the bar shows
// "processing" (no value) until the report arrives. A file, not inline code: the Content-Security-Policy
// allows scripts from the site itself only.
document.addEventListener("htmx:xhr:progress", (event) => {
  const bar = document.getElementById("upload-progress");
  if (!bar || !event.detail.lengthComputable) return;
  if (event.detail.loaded < event.detail.total) {
    bar.value = Math.round((100 * event.detail.loaded) / event.detail.total);
  } else {
    bar.removeAttribute("value");
    const note = document.getElementById("upload-progress-note");
    if (note) note.textContent = "Checking, storing and anchoring the bundle…";
  }
});
