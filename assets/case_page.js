// The case page's deep link: the current view is written into the address bar (replaceState: no reload, no
// Dash navigation) and shown in a read-only field so a colleague can be sent the same view.
// The modality the verdict keys act on: the panel or review section clicked last (the slide until then).
const MODALITY_OF = [["#case-slide-card", "slide"], ["#case-patient-card", "patient"], ["#case-report-card", "report"]];
document.addEventListener("click", function (event) {
    const section = event.target.closest ? event.target.closest(".review-modality, #case-slide-card, #case-patient-card, #case-report-card") : null;
    if (!section) { return; }
    const own = MODALITY_OF.find(([selector]) => section.matches(selector));
    const save = section.querySelector("button[id*='review-save']");
    const modality = own ? own[1] : (save && JSON.parse(save.id).modality);
    if (modality) { setFocusedModality(modality); }
}, true);

function setFocusedModality(modality) {
    window.pathreviewFocusedModality = modality;
    document.querySelectorAll(".review-modality").forEach(function (el) {
        const save = el.querySelector("button[id*='review-save']");
        el.classList.toggle("keys-focus", !!save && JSON.parse(save.id).modality === modality);
    });
}

window.dash_clientside = Object.assign({}, window.dash_clientside, {
    casePage: {
        // [ and ] show the previous and next slide of the strip; n opens the next case; a, d, u set the verdict of the
        // focused modality (the form still needs Save). Keys typed into a field are text, not commands.
        caseKeys: function (n, keydown, nextCase, ids, values) {
            const noUpdate = window.dash_clientside.no_update;
            const unchanged = (values || []).map(() => noUpdate);
            const el = document.activeElement;
            const typing = el && (el.tagName === "TEXTAREA" || el.isContentEditable ||
                                  (el.tagName === "INPUT" && !["radio", "checkbox", "button"].includes(el.type)));
            if (!keydown || typing || keydown.ctrlKey || keydown.altKey || keydown.metaKey) { return unchanged; }
            const key = keydown.key;
            if (key === "[" || key === "]") {
                const strip = Array.from(document.querySelectorAll(".slide-strip-item"));
                const at = strip.findIndex((b) => b.classList.contains("selected"));
                const next = strip[at + (key === "]" ? 1 : -1)];
                if (at >= 0 && next) { next.click(); }
                return unchanged;
            }
            if (key === "n" && nextCase) {
                window.location.assign("/case/" + encodeURIComponent(nextCase));
                return unchanged;
            }
            const verdict = {a: "agree", d: "disagree", u: "uncertain"}[key];
            if (!verdict) { return unchanged; }
            const modality = window.pathreviewFocusedModality || "slide";
            setFocusedModality(modality);
            const i = ids.findIndex((id) => id.modality === modality);
            const radio = document.querySelector("[id*='review-verdict'][id*='\"" + modality + "\"'] input");
            if (i < 0 || (radio && radio.disabled)) { return unchanged; }  // a viewer's form stays as it is
            unchanged[i] = verdict;
            return unchanged;
        },
        // The names of the unfolded panels (dashboard/components/folds.py); a fold not on the page keeps its last state.
        openFolds: function (actives, ids, current) {
            const open = new Set(current || []);
            (ids || []).forEach(function (id, i) {
                const active = actives[i];
                const unfolded = Array.isArray(active) ? active.includes(id.name) : active === id.name;
                if (unfolded) { open.add(id.name); } else { open.delete(id.name); }
            });
            return Array.from(open).sort();
        },
        deepLink: function (patientId, slideId, visit, reportId, zoom, center, layer, overlap, cmap, threshold, norm, opacity,
                            brightness, contrast, gamma, panels) {
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
            setAdjustment(query, [brightness, contrast, gamma]);
            if (panels && panels.length) { query.set("open", panels.join(",")); }
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
