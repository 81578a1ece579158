// The side-by-side view in the browser (dashboard/components/side_by_side.py): each pane follows the other, each pane
// reads out its magnification and centre, and the address bar holds the view (replaceState: no reload).
(function () {
    function latlng(center) {
        return Array.isArray(center) ? [center[0], center[1]] : [center.lat, center.lng];
    }

    // The same place (µm from the slide's top-left corner) at the same µm per screen pixel on the other slide, as
    // dashboard/components/viewer_pane.synced_view computes it.
    function syncedView(center, zoom, source, target) {
        const [lat, lng] = latlng(center);
        const umX = lng * Math.pow(2, source.max_zoom) * source.mpp;
        const umY = -lat * Math.pow(2, source.max_zoom) * source.mpp;
        const umPerScreenPx = source.mpp * Math.pow(2, source.max_zoom - zoom);
        const z = Math.max(target.min_zoom, Math.min(target.max_zoom + 1, Math.round(target.max_zoom - Math.log2(umPerScreenPx / target.mpp))));
        const scale = Math.pow(2, target.max_zoom);
        return {center: [-umY / target.mpp / scale, umX / target.mpp / scale], zoom: z};
    }

    // The same zoom and centres less than a screen pixel apart: the pane is already there.
    function sameView(a, b) {
        if (!a || !b || a.zoom !== b.zoom) { return false; }
        const px = Math.pow(2, a.zoom);
        return Math.abs(a.center[0] - b.center[0]) * px < 1 && Math.abs(a.center[1] - b.center[1]) * px < 1;
    }

    function micrometres(value) {
        return Math.round(value).toLocaleString("en-US") + " µm";
    }

    window.dash_clientside = Object.assign({}, window.dash_clientside, {
        sideBySide: {
            // The pane that moved sets the other's view; the move that view causes (its echo) is not sent back, so two
            // slides whose zoom levels do not map one to one cannot push each other round.
            follow: function (leftZoom, leftCenter, rightZoom, rightCenter, leftCtx, rightCtx, following) {
                const noUpdate = window.dash_clientside.no_update;
                const triggered = (window.dash_clientside.callback_context.triggered || []).map((t) => t.prop_id);
                const moved = ["left", "right"].find((pane) => triggered.some((id) => id.startsWith("pane-" + pane + "-map.")));
                if (!moved || !leftCtx || !rightCtx) { return [noUpdate, noUpdate, noUpdate]; }
                const views = {
                    left: leftCenter && leftZoom !== null && leftZoom !== undefined ? {center: latlng(leftCenter), zoom: leftZoom} : null,
                    right: rightCenter && rightZoom !== null && rightZoom !== undefined ? {center: latlng(rightCenter), zoom: rightZoom} : null,
                };
                const ctxs = {left: leftCtx, right: rightCtx};
                const state = Object.assign({}, following || {});
                const view = views[moved];
                if (!view) { return [noUpdate, noUpdate, noUpdate]; }
                const echo = state[moved] && sameView(state[moved], view);
                delete state[moved];
                if (echo) { return [noUpdate, noUpdate, state]; }
                const partner = moved === "left" ? "right" : "left";
                const target = syncedView(view.center, view.zoom, ctxs[moved], ctxs[partner]);
                if (sameView(target, views[partner])) { return [noUpdate, noUpdate, state]; }
                state[partner] = target;
                const viewport = {center: target.center, zoom: target.zoom, transition: "setView", options: {animate: false}};
                return moved === "left" ? [noUpdate, viewport, state] : [viewport, noUpdate, state];
            },
            readout: function (zoom, center, ctx) {
                if (!ctx || zoom === null || zoom === undefined || !center) { return ""; }
                const [lat, lng] = latlng(center);
                const scale = Math.pow(2, ctx.max_zoom);
                const magnification = window.dash_clientside.slideViewer.magnification(zoom, ctx);
                return magnification + " · centre x " + micrometres(lng * scale * ctx.mpp) + ", y " + micrometres(-lat * scale * ctx.mpp);
            },
            deepLink: function (leftSlide, leftModel, leftLayer, rightSlide, rightModel, rightLayer, zoom, center,
                                lBrightness, lContrast, lGamma, rBrightness, rContrast, rGamma) {
                if (!leftSlide) { return window.dash_clientside.no_update; }
                const query = new URLSearchParams({left: leftSlide});
                const pairs = [["right", rightSlide], ["lmodel", leftModel], ["rmodel", rightModel], ["llayer", leftLayer], ["rlayer", rightLayer]];
                pairs.forEach(([key, value]) => { if (value) { query.set(key, value); } });
                if (zoom !== null && zoom !== undefined && center) {
                    const [lat, lng] = latlng(center);
                    query.set("z", String(zoom));
                    query.set("lat", lat.toFixed(5));
                    query.set("lng", lng.toFixed(5));
                }
                setAdjustment(query, [lBrightness, lContrast, lGamma], "l");
                setAdjustment(query, [rBrightness, rContrast, rGamma], "r");
                const path = "/compare?" + query.toString();
                if (window.location.pathname === "/compare") {
                    window.history.replaceState(window.history.state, "", path);
                }
                return window.location.origin + path;
            }
        }
    });
})();
