// The door page: choose or capture a photo, identify it, show who it is (or "unknown").
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const keyInput = $("key"), remember = $("remember"), photo = $("photo"), preview = $("preview");
  const video = $("video"), placeholder = $("placeholder"), cameraButton = $("camera");
  const snapButton = $("snap"), identifyButton = $("identify"), result = $("result"), candidates = $("candidates");
  const STORE = "twinshot.doorKey";
  let current = null; // the Blob to identify
  let stream = null;

  const saved = window.localStorage.getItem(STORE);
  if (saved) {
    keyInput.value = saved;
    remember.checked = true;
  }
  function rememberKey() {
    if (remember.checked && keyInput.value) window.localStorage.setItem(STORE, keyInput.value);
    else window.localStorage.removeItem(STORE);
  }
  remember.addEventListener("change", rememberKey);
  keyInput.addEventListener("change", rememberKey);

  function setPhoto(blob) {
    current = blob;
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(blob);
    preview.hidden = false;
    placeholder.hidden = true;
    identifyButton.disabled = false;
  }

  function showResult(kind, html) {
    result.className = "result " + kind;
    result.replaceChildren(...html);
    result.hidden = false;
  }

  function text(tag, content, cls) {
    const el = document.createElement(tag);
    el.textContent = content;
    if (cls) el.className = cls;
    return el;
  }

  async function identify() {
    if (!current) return;
    if (!keyInput.value) {
      showResult("error", [text("span", "Enter the door key first.")]);
      keyInput.focus();
      return;
    }
    identifyButton.disabled = true;
    showResult("busy", [text("span", "Identifying…")]);
    candidates.hidden = true;
    const form = new FormData();
    form.append("image", current, current.name || "photo.png");
    try {
      const answer = await twinshotApi("/v1/identify?k=3", { method: "POST", key: keyInput.value, body: form });
      if (answer.identity !== null) {
        showResult("ok", [
          text("span", "Recognised as "),
          text("strong", answer.identity, "who"),
          text("span", " (score " + formatScore(answer.score) + ")", "score"),
        ]);
      } else {
        showResult("unknown", [
          text("strong", "Unknown"),
          text("span", answer.score === null ? " (nobody is enrolled)" : " (best score " + formatScore(answer.score) + ", threshold " + formatScore(answer.threshold) + ")", "score"),
        ]);
      }
      candidates.replaceChildren(
        ...answer.candidates.map((c) => text("li", c.identity + " — score " + formatScore(c.score) + ", p " + Number(c.probability).toFixed(2)))
      );
      candidates.hidden = answer.candidates.length === 0;
    } catch (err) {
      showResult("error", [text("span", "Error: " + err.message)]);
    } finally {
      identifyButton.disabled = false;
    }
  }

  photo.addEventListener("change", () => {
    if (photo.files.length) {
      stopCamera();
      setPhoto(photo.files[0]);
      identify();
    }
  });
  identifyButton.addEventListener("click", identify);

  function stopCamera() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    video.hidden = true;
    snapButton.hidden = true;
    cameraButton.hidden = false;
  }

  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) cameraButton.hidden = true;
  cameraButton.addEventListener("click", async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user" }, audio: false });
    } catch (err) {
      showResult("error", [text("span", "The camera is not available: " + err.message)]);
      return;
    }
    video.srcObject = stream;
    video.hidden = false;
    preview.hidden = true;
    placeholder.hidden = true;
    snapButton.hidden = false;
    cameraButton.hidden = true;
  });
  snapButton.addEventListener("click", () => {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    stopCamera();
    canvas.toBlob((blob) => {
      blob.name = "camera.png";
      setPhoto(blob);
      identify();
    }, "image/png");
  });
})();
