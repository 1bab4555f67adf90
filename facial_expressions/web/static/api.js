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

function authHeader() {
  const token = localStorage.getItem(KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// A POST with a FormData body that reports how much of it is sent (fetch cannot): onProgress(0..1).
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    for (const [name, value] of Object.entries(authHeader())) request.setRequestHeader(name, value);
    request.responseType = "json";
    request.upload.addEventListener("progress", (event) => event.lengthComputable && onProgress(event.loaded / event.total));
    request.addEventListener("error", () => reject(new ApiFailure(0, "the server did not answer (is it still running? an upload over its size limit can also end like this)")));
    request.addEventListener("load", () => {
      const data = request.response;
      if (request.status >= 200 && request.status < 300) resolve(data);
      else if (request.status === 401) reject(new ApiFailure(401, "this server needs its access token: open the address it printed when it started (…/#token=…)"));
      else reject(new ApiFailure(request.status, (data && data.detail) || `${request.status} ${request.statusText}`));
    });
    request.send(form);
  });
}

// An address the page can put in <video src>, <img src> or a link: the API's own path, or, when the
// server wants a token (which such elements cannot send), the file fetched with it as a blob: URL.
export async function fileUrl(path) {
  const headers = authHeader();
  if (!headers.Authorization) return path;
  const response = await fetch(path, { headers });
  if (!response.ok) throw new ApiFailure(response.status, `${path.split("/").pop()}: ${response.status} ${response.statusText}`);
  return URL.createObjectURL(await response.blob());
}
