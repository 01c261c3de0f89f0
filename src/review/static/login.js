// Sign-in: the token goes to /api/login, which sets an HttpOnly session cookie.
const form = document.getElementById('login-form');
const error = document.getElementById('login-error');
form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.textContent = '';
  const token = document.getElementById('token').value;
  const res = await fetch('/api/login', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }), credentials: 'same-origin' });
  if (res.ok) {
    window.location.assign('/');
  } else {
    const body = await res.json().catch(() => ({}));
    error.textContent = body.error || `sign-in failed (${res.status})`;
  }
});
