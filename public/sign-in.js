// Passkey ceremonies for the sign-in and account pages. Everything works without this file except
// passkeys themselves. Uses the SimpleWebAuthnBrowser global from /static/simplewebauthn-browser.js.
(function () {
  'use strict';
  var wa = window.SimpleWebAuthnBrowser;
  if (!wa || !wa.browserSupportsWebAuthn()) return;

  function $(id) { return document.getElementById(id); }
  function showError(message) {
    var el = $('passkey-error');
    if (!el) return;
    el.textContent = message;
    el.hidden = false;
  }
  function postJson(url, body) {
    return fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body),
    }).then(function (res) {
      return res.json().then(function (data) {
        if (!res.ok) throw Object.assign(new Error(data.error_description || 'Something went wrong.'), { status: res.status });
        return data;
      });
    });
  }
  function getJson(url) {
    return fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } }).then(function (res) {
      return res.json().then(function (data) {
        if (!res.ok) throw new Error(data.error_description || 'Something went wrong.');
        return data;
      });
    });
  }
  // On a sign-in's pages, the API calls name that sign-in: another tab may have begun another one.
  var uid = (/^\/interaction\/([A-Za-z0-9_-]+)/.exec(window.location.pathname) || [])[1];
  function api(path) { return uid ? path + '?interaction=' + encodeURIComponent(uid) : path; }
  function cancelled(err) { return err && (err.name === 'NotAllowedError' || err.name === 'AbortError'); }

  function authenticate(useAutofill) {
    return getJson(api('/api/auth/mfa/challenge/webauthn'))
      .then(function (options) { return wa.startAuthentication({ optionsJSON: options, useBrowserAutofill: useAutofill }); })
      .then(function (response) { return postJson(api('/api/auth/mfa/verify/webauthn'), response); })
      .then(function (result) { window.location.assign(result.redirectTo); });
  }

  function showRecoveryCodes(codes, next) {
    var list = $('recovery-code-list');
    codes.forEach(function (code) {
      var li = document.createElement('li');
      var c = document.createElement('code');
      c.textContent = code;
      li.appendChild(c);
      list.appendChild(li);
    });
    // The passkey is added: what came before the codes (add another, choose another way, not now) would
    // only lead to errors now (an audit finding).
    Array.prototype.forEach.call(document.querySelectorAll('[data-before-codes]'), function (el) { el.hidden = true; });
    var link = $('recovery-continue');
    link.href = next;
    $('recovery-codes').hidden = false;
    link.focus();
  }

  // During a sign-in, a 403 means the step has moved on (the factors grew too old to add one): the page,
  // reloaded, shows what is asked now (the password again) instead of a dead end.
  function stepMovedOn(err) {
    if (err.status !== 403 || !/^\/interaction\//.test(window.location.pathname)) throw err;
    window.location.reload();
    return new Promise(function () {});
  }

  function enroll() {
    var nameInput = $('passkey-name');
    return postJson(api('/api/mfa/passkeys/start'), {}).catch(stepMovedOn)
      .then(function (options) { return wa.startRegistration({ optionsJSON: options }); })
      .then(function (response) {
        response.name = nameInput ? nameInput.value : undefined;
        return postJson(api('/api/mfa/passkeys/finish'), response).catch(stepMovedOn);
      })
      .then(function (result) {
        if (result.recoveryCodes) showRecoveryCodes(result.recoveryCodes, result.redirectTo || '/account');
        else window.location.assign(result.redirectTo || '/account');
      });
  }

  function wire(buttonId, action) {
    var button = $(buttonId);
    if (!button) return;
    button.addEventListener('click', function () {
      button.disabled = true;
      action().catch(function (err) {
        showError(cancelled(err) ? 'The passkey request was cancelled or timed out. Try again, or choose another way.' : err.message);
      }).then(function () { button.disabled = false; });
    });
  }

  var signin = document.querySelector('[data-passkey="signin"]');
  if (signin) {
    signin.hidden = false;
    wire('passkey-signin', function () { return authenticate(false); });
    // Conditional mediation: offer passkeys in the username field's autofill where supported.
    wa.browserSupportsWebAuthnAutofill().then(function (supported) {
      if (!supported) return;
      // The page ships autocomplete="username"; the webauthn token opts the field into passkey autofill.
      var login = $('login');
      if (login) login.setAttribute('autocomplete', 'username webauthn');
      authenticate(true).catch(function () { /* the user chose the password instead */ });
    });
  }
  wire('passkey-verify', function () { return authenticate(false); });
  wire('passkey-enroll', enroll);
  // The passkey's name field is not in a form: Enter there adds the passkey, as Enter in a form submits it.
  var nameField = $('passkey-name');
  if (nameField) {
    nameField.addEventListener('keydown', function (event) {
      var add = $('passkey-enroll');
      if (event.key === 'Enter' && add && !add.disabled) { event.preventDefault(); add.click(); }
    });
  }

  // After removing a passkey, tell the browser's passkey manager it no longer works here (Signal API).
  var removed = $('removed-credential');
  if (removed && window.PublicKeyCredential && PublicKeyCredential.signalUnknownCredential) {
    PublicKeyCredential.signalUnknownCredential({
      rpId: removed.getAttribute('data-rp-id'),
      credentialId: removed.getAttribute('data-credential-id'),
    }).catch(function () { /* best effort */ });
  }
})();
