// The case page's deep link: the current view is written into the address bar (replaceState: no reload, no
// Dash navigation) and shown in a read-only field so a colleague can be sent the same view.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
    casePage: {
        deepLink: function (patientId, slideId, visit, reportId, zoom, center, layer, overlap, cmap, threshold, norm, opacity) {
            if (!patientId) { return window.dash_clientside.no_update; }
            const query = new URLSearchParams();
            if (slideId) { query.set("slide", slideId); }
            if (visit !== null && visit !== undefined) { query.set("visit", String(visit + 1)); }
            if (reportId) { query.set("report", reportId); }
            if (layer) { query.set("layer", layer); }
            if (overlap !== null && overlap !== undefined) { query.set("overlap", String(Math.round(overlap * 100))); }
            if (cmap) { query.set("cmap", cmap); }
            if (threshold !== null && threshold !== undefined) { query.set("thr", String(threshold)); }
            if (norm) { query.set("norm", norm); }
            if (opacity !== null && opacity !== undefined) { query.set("opacity", String(opacity)); }
            if (zoom !== null && zoom !== undefined && center) {
                const lat = Array.isArray(center) ? center[0] : center.lat;
                const lng = Array.isArray(center) ? center[1] : center.lng;
                query.set("z", String(zoom));
                query.set("lat", lat.toFixed(4));
                query.set("lng", lng.toFixed(4));
            }
            const path = "/case/" + encodeURIComponent(patientId) + "?" + query.toString();
            if (window.location.pathname.startsWith("/case/")) {
                window.history.replaceState(window.history.state, "", path);
            }
            return window.location.origin + path;
        }
    }
});
