// A callback the server refuses (403 role, 400 bad value, 429 too many jobs, 413 too large) answers with a plain-text
// reason. Dash drops such answers silently, so the reason is shown here, for every refused action alike.
(function () {
    const shown = new Set([400, 403, 404, 409, 413, 422, 429, 503]);
    const originalFetch = window.fetch.bind(window);
    function show(text) {
        let box = document.getElementById("refusal-message");
        if (!box) {
            box = document.createElement("div");
            box.id = "refusal-message";
            box.setAttribute("role", "alert");
            box.className = "alert alert-danger refusal-message";
            document.body.appendChild(box);
        }
        box.textContent = text;
        box.style.display = "block";
        clearTimeout(box.hideTimer);
        box.hideTimer = setTimeout(function () { box.style.display = "none"; }, 10000);
    }
    window.fetch = function (resource, init) {
        return originalFetch(resource, init).then(function (response) {
            const url = typeof resource === "string" ? resource : (resource && resource.url) || "";
            if (url.indexOf("_dash-update-component") === -1 || !shown.has(response.status)) { return response; }
            // Read once here; Dash gets a fresh response with the same text, status and headers.
            return response.text().then(function (text) {
                show(text.trim() || "The server refused this action.");
                return new Response(text, {status: response.status, statusText: response.statusText, headers: response.headers});
            });
        });
    };
})();
