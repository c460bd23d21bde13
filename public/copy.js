// "Copy" for the recovery codes page (the codes are also downloadable without JavaScript).
(function () {
  'use strict';
  var button = document.getElementById('copy-codes');
  var list = document.getElementById('recovery-code-list');
  if (!button || !list || !navigator.clipboard) return;
  button.hidden = false;
  button.addEventListener('click', function () {
    var codes = Array.prototype.map.call(list.querySelectorAll('code'), function (c) { return c.textContent; });
    navigator.clipboard.writeText(codes.join('\n')).then(function () { button.textContent = 'Copied'; });
  });
})();
