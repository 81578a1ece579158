// Client-side pieces of the slide viewer: no server round trip for opacity, scale bar or overview box.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
    slideViewer: {
        setOpacity: function (value) {
            return value;
        },
        // The objective magnification the screen shows, by the usual convention that 40x is 0.25 µm per pixel.
        magnification: function (zoom, ctx) {
            if (!ctx || zoom === undefined || zoom === null) { return ""; }
            const umPerPx = ctx.mpp * Math.pow(2, ctx.max_zoom - zoom);
            const m = EQUIVALENT_UM_AT_1X / umPerPx;
            return "≈ " + (m >= 10 ? m.toFixed(0) : m.toFixed(m >= 1 ? 1 : 2)) + "× (" + umPerPx.toFixed(2) + " µm/px)";
        },
        // Preset buttons and keys: arrows pan by a quarter of the view, + and - zoom, 1-6 the presets; ? opens the help.
        viewerKeys: function (nKeys, p1, p2, p3, p4, p5, p6, keydown, ctx, zoom, center, bounds, helpOpen) {
            const noUpdate = window.dash_clientside.no_update;
            const triggered = (window.dash_clientside.callback_context.triggered || []).map((t) => t.prop_id);
            if (!ctx || zoom === undefined || zoom === null || !center) { return [noUpdate, noUpdate]; }
            const lat = Array.isArray(center) ? center[0] : center.lat;
            const lng = Array.isArray(center) ? center[1] : center.lng;
            const view = (z, la, ln) => afterZoomAnimation([{center: [la, ln], zoom: Math.max(ctx.min_zoom, Math.min(ctx.max_zoom + 1, z))}, noUpdate]);
            const preset = triggered.find((id) => id.startsWith("mag-preset-"));
            if (preset) {
                return view(presetZoom(ctx, MAGNIFICATIONS[parseInt(preset.slice(11), 10)]), lat, lng);
            }
            if (!triggered.includes("viewer-keys.n_keydowns") || !keydown || typingInAField()) { return [noUpdate, noUpdate]; }
            if (keydown.ctrlKey || keydown.altKey || keydown.metaKey) { return [noUpdate, noUpdate]; }
            const key = keydown.key;
            if (key === "?") { return [noUpdate, !helpOpen]; }
            const height = bounds ? Math.abs(bounds[1][0] - bounds[0][0]) : 0;
            const width = bounds ? Math.abs(bounds[1][1] - bounds[0][1]) : 0;
            const pans = {ArrowUp: [height / 4, 0], ArrowDown: [-height / 4, 0], ArrowLeft: [0, -width / 4], ArrowRight: [0, width / 4]};
            if (pans[key]) { return view(zoom, lat + pans[key][0], lng + pans[key][1]); }
            if (key === "+" || key === "=") { return view(zoom + 1, lat, lng); }
            if (key === "-" || key === "_") { return view(zoom - 1, lat, lng); }
            const digit = parseInt(key, 10);
            if (digit >= 1 && digit <= MAGNIFICATIONS.length) { return view(presetZoom(ctx, MAGNIFICATIONS[digit - 1]), lat, lng); }
            return [noUpdate, noUpdate];
        },
        // The side-by-side link of the shown view: this layer beside the bare slide (dashboard/components/compare_link.py).
        sideBySideHref: function (zoom, center, layer, brightness, contrast, gamma, ctx) {
            if (!ctx) { return window.dash_clientside.no_update; }
            const query = new URLSearchParams({left: ctx.slide_id, right: ctx.slide_id, llayer: layer || "tumour", rlayer: "none"});
            // Both panes show the tiles as this viewer does.
            ["l", "r"].forEach((pane) => setAdjustment(query, [brightness, contrast, gamma], pane));
            if (zoom !== null && zoom !== undefined && center) {
                query.set("z", String(zoom));
                query.set("lat", String(Array.isArray(center) ? center[0] : center.lat));
                query.set("lng", String(Array.isArray(center) ? center[1] : center.lng));
            }
            return "/compare?" + query.toString();
        },
        // A patch clicked on the slide unfolds the inspector that shows it (dashboard/components/folds.py); other folds stay.
        unfoldInspector: function (patch, actives, ids) {
            const noUpdate = window.dash_clientside.no_update;
            return (ids || []).map(function (id, i) {
                const items = Array.isArray(actives[i]) ? actives[i] : (actives[i] ? [actives[i]] : []);
                return !patch || id.name !== "inspector" || items.includes("inspector") ? noUpdate : items.concat(["inspector"]);
            });
        },
        viewportWidgets: function (zoom, bounds, ctx) {
            const noUpdate = window.dash_clientside.no_update;
            if (!ctx || zoom === undefined || zoom === null) {
                return [noUpdate, noUpdate, noUpdate];
            }
            // Microns per screen pixel at this zoom: level-0 mpp times the downsample.
            const umPerPx = ctx.mpp * Math.pow(2, ctx.max_zoom - zoom);
            const nice = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000];
            let length = nice[0];
            for (const n of nice) {
                if (n / umPerPx <= 140) { length = n; }
            }
            const label = length >= 1000 ? (length / 1000) + " mm" : length + " µm";
            return [{width: Math.round(length / umPerPx) + "px"}, label, overviewBox(bounds, ctx)];
        }
    }
});

// The tiles' brightness, contrast and gamma in a link, each only when it is not 1 (dashboard/components/image_adjust.py).
function setAdjustment(query, values, prefix) {
    ["brightness", "contrast", "gamma"].forEach(function (name, i) {
        const value = values[i];
        if (value !== null && value !== undefined && value !== 1) { query.set((prefix || "") + name, String(value)); }
    });
}

const EQUIVALENT_UM_AT_1X = 10;  // µm per screen pixel at 1x: 0.25 µm/px at 40x
const MAGNIFICATIONS = [1.25, 2.5, 5, 10, 20, 40];

// The zoom level nearest a magnification: the screen then shows EQUIVALENT_UM_AT_1X / m µm per pixel.
function presetZoom(ctx, m) {
    return Math.round(ctx.max_zoom + Math.log2(m * ctx.mpp / EQUIVALENT_UM_AT_1X));
}

// Leaflet ignores a view asked for while its zoom animation runs (the map pane carries leaflet-zoom-anim then), and the
// map's zoom property already holds that animation's target: a key pressed meanwhile is answered once the animation
// has ended, so that it is not lost.
const ZOOM_ANIMATION_WAIT_MS = 2000;
function afterZoomAnimation(result) {
    const pane = document.querySelector("#slide-map .leaflet-map-pane");
    const animating = () => pane && pane.isConnected && pane.classList.contains("leaflet-zoom-anim");
    if (!animating()) { return result; }
    const until = performance.now() + ZOOM_ANIMATION_WAIT_MS;
    return new Promise((resolve) => {
        const check = () => (animating() && performance.now() < until ? setTimeout(check, 25) : resolve(result));
        check();
    });
}

// Keys typed into a comment, a number box or a dropdown are text, not commands.
function typingInAField() {
    const el = document.activeElement;
    if (!el) { return false; }
    if (el.tagName === "INPUT") { return !["radio", "checkbox", "button", "range", "submit"].includes(el.type); }
    return el.tagName === "TEXTAREA" || el.tagName === "SELECT" || el.isContentEditable;
}

// The main viewer's extent as a box over the overview thumbnail, in % of the slide.
function overviewBox(bounds, ctx) {
    if (!bounds) { return window.dash_clientside.no_update; }
    const scale = Math.pow(2, ctx.max_zoom);
    const clamp = (v) => Math.min(100, Math.max(0, v));
    const top = clamp(-bounds[1][0] * scale / ctx.height * 100);
    const bottom = clamp(-bounds[0][0] * scale / ctx.height * 100);
    const left = clamp(bounds[0][1] * scale / ctx.width * 100);
    const right = clamp(bounds[1][1] * scale / ctx.width * 100);
    return {top: top + "%", left: left + "%", width: (right - left) + "%", height: (bottom - top) + "%"};
}
