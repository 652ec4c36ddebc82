// Has the patient's passkey sign a document: a WebAuthn assertion whose challenge the server derived from the
// document (SHA-256 of its canonical JSON). The form carries the document, the challenge and the patient's
// credentials on the ledger; the assertion goes into its "signature" field and the form is sent. The ledger, not
// this page, checks the signature: nothing here is trusted.
(function () {
  "use strict";

  function fromBase64Url(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  }

  function toBase64Url(buffer) {
    let binary = "";
    new Uint8Array(buffer).forEach((byte) => { binary += String.fromCharCode(byte); });
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function sign(form) {
    const status = form.querySelector("[data-sign-status]");
    const button = form.querySelector("[data-sign]");
    status.hidden = false;
    status.textContent = "Waiting for your passkey…";
    button.disabled = true;
    try {
      const credentials = JSON.parse(form.dataset.credentials);
      const assertion = await navigator.credentials.get({
        publicKey: {
          challenge: fromBase64Url(form.dataset.challenge),
          allowCredentials: credentials.map((id) => ({ type: "public-key", id: fromBase64Url(id) })),
          userVerification: "required",
          timeout: 120000,
        },
      });
      form.elements.signature.value = JSON.stringify({
        credential_id: toBase64Url(assertion.rawId),
        authenticator_data: toBase64Url(assertion.response.authenticatorData),
        client_data_json: toBase64Url(assertion.response.clientDataJSON),
        signature: toBase64Url(assertion.response.signature),
      });
      status.textContent = "Signed. Writing it to the ledger…";
      form.submit();
    } catch (error) {
      status.textContent = "Your passkey did not sign (" + error.name + "), so nothing was changed. You can try again.";
      button.disabled = false;
    }
  }

  // The buttons are disabled in the page: without this script (no JavaScript, or not loaded yet) a click would send
  // the form unsigned.
  document.querySelectorAll("[data-sign]").forEach((button) => { button.disabled = false; });

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-sign]");
    if (!button || !button.form) return;
    event.preventDefault();
    sign(button.form);
  });
})();
