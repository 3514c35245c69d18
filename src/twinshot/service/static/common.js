// Shared by the door and admin pages: calling the JSON API with a key.
"use strict";

/** Call the API; resolves to the JSON body, or rejects with an Error carrying its message. */
async function twinshotApi(path, { method = "GET", key = "", body = null } = {}) {
  const headers = {};
  if (key) headers["Authorization"] = "Bearer " + key;
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch (err) {
    throw new Error("the service cannot be reached");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = null;
  }
  if (!response.ok) {
    const message = data && data.message ? data.message : "HTTP " + response.status;
    const error = new Error(message);
    error.status = response.status;
    error.code = data && data.error;
    throw error;
  }
  return data;
}

/** Format a score (a logit) for people; null means no score. */
function formatScore(score) {
  return score === null || score === undefined ? "-" : Number(score).toFixed(2);
}

/** Set the text and kind (ok, error, info, unknown) of a status element. */
function showStatus(element, text, kind) {
  element.textContent = text;
  element.className = "status " + (kind || "info");
  element.hidden = !text;
}
