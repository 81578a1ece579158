// Client-side pieces of the slide viewer: no server round trip for opacity, scale bar or overview box.
window.dash_clientside = Object.assign({}, window.dash_clientside, {
    slideViewer: {
        setOpacity: function (value) {
            return value;
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
