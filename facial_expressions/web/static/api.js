// Talking to the server: JSON answers, one-line errors, and the access token.
//
// A server that other machines can reach wants a token. It prints its address with the token in
// the fragment (http://host:8000/#token=...), which browsers never send to a server; the page keeps
// the token in this browser, removes it from the address bar and sends it as a bearer header.

const KEY = "facial-expressions-token";

export function takeToken() {
  const found = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (found) {
    localStorage.setItem(KEY, decodeURIComponent(found[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
}

export class ApiFailure extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function call(path, { method = "GET", body, json } = {}) {
  const token = localStorage.getItem(KEY);
  const init = { method, headers: token ? { Authorization: `Bearer ${token}` } : {} };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiFailure(0, "the server did not answer (is it still running? an upload over its size limit can also end like this)");
  }
  let data = null;
  try {
    data = await response.json();
  } catch (error) {
    data = null;
  }
  if (!response.ok) {
    if (response.status === 401) {
      throw new ApiFailure(401, "this server needs its access token: open the address it printed when it started (…/#token=…)");
    }
    throw new ApiFailure(response.status, (data && data.detail) || `${response.status} ${response.statusText}`);
  }
  return data;
}
