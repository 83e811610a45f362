/*
 * mfa-gateway: security keys and passkeys (WebAuthn) on the gateway's own pages.
 *
 * Served from {prefix}/static/webauthn.js under a Content-Security-Policy without 'unsafe-inline' or 'unsafe-eval'
 * (and with Trusted Types required): no framework, no build step, no HTML written from strings. The pages work
 * without it: every WebAuthn part is marked up `hidden` (data-webauthn-part) and shown here only when the browser
 * can run WebAuthn; a paragraph marked data-webauthn-fallback says what to do otherwise, and is hidden here instead.
 *
 * Forms opt in with data-webauthn:
 *   "authenticate"  POST {} to data-options (JSON), navigator.credentials.get, then submit the form itself with the
 *                   answer in its hidden fields ceremonyId and credential: a navigation, so the server answers as it
 *                   does any form (a redirect, an application's released login, or the page with an error).
 *   "register"      POST {name} to data-options, navigator.credentials.create, POST {ceremonyId, credential} to
 *                   data-finish (JSON), then go to data-next.
 * JSON calls follow the API's CSRF rule: only a same-origin script can send application/json without a preflight.
 * Errors are said in words in the element named by data-webauthn-alert (role="alert"); a form's buttons are disabled
 * while its ceremony runs. window.mfaGatewayWebAuthn offers the ceremonies to other buttons (a sign-in with a
 * passkey, say): authenticate(optionsUrl, body) and register(optionsUrl, finishUrl, name).
 */
(() => {
  "use strict";

  const supported = () =>
    typeof window.PublicKeyCredential === "function" &&
    !!navigator.credentials &&
    typeof navigator.credentials.get === "function" &&
    typeof navigator.credentials.create === "function";

  // -- base64url, for browsers without PublicKeyCredential.parse*OptionsFromJSON and toJSON() -------------------

  const toBase64url = (buffer) => {
    const bytes = new Uint8Array(buffer);
    let text = "";
    for (const byte of bytes) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };

  const fromBase64url = (text) => {
    const padded = text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4);
    const binary = atob(padded);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  };

  const descriptors = (list) => (list || []).map((item) => ({ ...item, id: fromBase64url(item.id) }));

  const creationOptions = (json) => {
    if (typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function") {
      return PublicKeyCredential.parseCreationOptionsFromJSON(json);
    }
    return {
      ...json,
      challenge: fromBase64url(json.challenge),
      user: { ...json.user, id: fromBase64url(json.user.id) },
      excludeCredentials: descriptors(json.excludeCredentials),
    };
  };

  const requestOptions = (json) => {
    if (typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function") {
      return PublicKeyCredential.parseRequestOptionsFromJSON(json);
    }
    return { ...json, challenge: fromBase64url(json.challenge), allowCredentials: descriptors(json.allowCredentials) };
  };

  const credentialJSON = (credential) => {
    if (typeof credential.toJSON === "function") return credential.toJSON();
    const answer = credential.response;
    const response = { clientDataJSON: toBase64url(answer.clientDataJSON) };
    if (answer.attestationObject) {
      response.attestationObject = toBase64url(answer.attestationObject);
      response.transports = typeof answer.getTransports === "function" ? answer.getTransports() : [];
    } else {
      response.authenticatorData = toBase64url(answer.authenticatorData);
      response.signature = toBase64url(answer.signature);
      if (answer.userHandle) response.userHandle = toBase64url(answer.userHandle);
    }
    const json = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response,
      clientExtensionResults: credential.getClientExtensionResults(),
    };
    if (credential.authenticatorAttachment) json.authenticatorAttachment = credential.authenticatorAttachment;
    return json;
  };

  // -- talking to the gateway --------------------------------------------------------------------------------------

  /** An error whose message is meant for the user, as it is. */
  class Said extends Error {}

  const postJSON = async (url, body) => {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
      });
    } catch {
      throw new Said("The gateway could not be reached. Check your connection and try again.");
    }
    let answer = null;
    try {
      answer = await response.json();
    } catch {
      answer = null;
    }
    if (!response.ok || !answer || answer.success !== true) {
      const message = answer && typeof answer.error === "string" ? answer.error : "";
      throw new Said(message || `The gateway answered with an error (HTTP ${response.status}). Try again.`);
    }
    return answer.data;
  };

  /** What went wrong in the browser or the authenticator, in words. */
  const browserMessage = (error, registering) => {
    switch (error && error.name) {
      case "NotAllowedError":
        return registering
          ? "The security key or passkey did not answer: the request was cancelled, timed out or not allowed. Try again."
          : "No security key or passkey answered: the request was cancelled or timed out, the key could not check " +
              "your PIN or fingerprint, or it is not one registered to your account. Try again.";
      case "InvalidStateError":
        return "This security key or passkey is already registered to your account.";
      case "AbortError":
        return "The request to your security key or passkey was cancelled.";
      case "NotSupportedError":
        return "This security key or passkey cannot do what the gateway asks for. Try another one.";
      case "SecurityError":
        return "This page's address cannot use security keys: it does not match the gateway's WebAuthn settings. " +
          "Ask your administrator.";
      default:
        return "Your browser could not use the security key or passkey. Try again, or use another browser.";
    }
  };

  const ceremony = async (run, registering) => {
    try {
      const credential = await run();
      if (!credential) throw new Error("no credential");
      return credential;
    } catch (error) {
      throw new Said(browserMessage(error, registering));
    }
  };

  /** Sign in with a key: options from optionsUrl, the user's answer as {ceremonyId, credential} (JSON). */
  const authenticate = async (optionsUrl, body = {}) => {
    const started = await postJSON(optionsUrl, body);
    const publicKey = requestOptions(started.publicKey);
    const credential = await ceremony(() => navigator.credentials.get({ publicKey }), false);
    return { ceremonyId: started.ceremonyId, credential: credentialJSON(credential) };
  };

  /** Register a key named `name`; the gateway's answer (the credential kept, and whether it enrolled the user). */
  const register = async (optionsUrl, finishUrl, name) => {
    const started = await postJSON(optionsUrl, { name });
    const publicKey = creationOptions(started.publicKey);
    const credential = await ceremony(() => navigator.credentials.create({ publicKey }), true);
    return postJSON(finishUrl, { ceremonyId: started.ceremonyId, credential: credentialJSON(credential) });
  };

  // -- the pages' forms --------------------------------------------------------------------------------------------

  const busy = (form, on) => {
    for (const button of form.querySelectorAll("button")) button.disabled = on;
    if (on) form.setAttribute("aria-busy", "true");
    else form.removeAttribute("aria-busy");
  };

  const say = (form, message) => {
    const alert = document.getElementById(form.dataset.webauthnAlert || "");
    if (alert) alert.textContent = message;
  };

  const actions = {
    async authenticate(form) {
      const answer = await authenticate(form.dataset.options);
      form.elements.namedItem("ceremonyId").value = answer.ceremonyId;
      form.elements.namedItem("credential").value = JSON.stringify(answer.credential);
      form.submit(); // a navigation: the buttons stay disabled until the next page
      return true;
    },
    async register(form) {
      await register(form.dataset.options, form.dataset.finish, form.elements.namedItem("name").value);
      window.location.assign(form.dataset.next);
      return true;
    },
  };

  const wire = (form) => {
    const action = actions[form.dataset.webauthn];
    if (!action) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (form.getAttribute("aria-busy") === "true") return;
      busy(form, true);
      say(form, "");
      try {
        await action(form);
      } catch (error) {
        say(form, error instanceof Said ? error.message : "Something went wrong. Reload the page and try again.");
        busy(form, false);
      }
    });
  };

  const start = () => {
    const usable = supported();
    for (const element of document.querySelectorAll("[data-webauthn-fallback]")) element.hidden = usable;
    if (!usable) return;
    for (const element of document.querySelectorAll("[data-webauthn-part]")) element.hidden = false;
    for (const form of document.querySelectorAll("form[data-webauthn]")) wire(form);
    // Back to a page kept in the back/forward cache: nothing is running any more.
    window.addEventListener("pageshow", (event) => {
      if (!event.persisted) return;
      for (const form of document.querySelectorAll("form[data-webauthn]")) busy(form, false);
    });
  };

  window.mfaGatewayWebAuthn = Object.freeze({ supported, authenticate, register });
  start(); // the script is deferred: the document is parsed
})();
