// Reviewers' regions on the slide viewer: their style, and the drawing events sent to the server as one GeoJSON
// change on the EditControl's `geojson` property ({features: [{properties: {op, shape, ...}, geometry}]}). Coordinates
// are Leaflet's own latlngs, unrounded: the server maps them to level-0 pixels exactly (x = lng * 2^max_zoom,
// y = -lat * 2^max_zoom).
//
// Two tools Leaflet.draw lacks are added here with Leaflet's own events: freehand drawing (a button in the draw
// toolbar: press, drag around the region, release) and moving the selected polygon whole (drag it). Both go through
// the EditControl's map events ("draw:created" with layerType "freehand", and "draw:moved"), so the server receives
// them like the other tools' shapes.
(function () {
    const FREEHAND_SPACING_PX = 2;  // a stroke point each time the pointer moved this far (core/annotations/freehand.py)
    const MOVE_MIN_PX = 3;  // a shorter drag of the selected region is a click, not a move
    const state = {busy: false};  // a Leaflet.draw tool, the freehand tool or a move is in use

    function ring(latlngs) {
        const coords = latlngs.map(function (p) { return [p.lng, p.lat]; });
        if (coords.length) { coords.push(coords[0].slice()); }
        return coords;
    }

    function geometry(layer) {
        if (layer.getLatLng && !layer.getLatLngs) {  // a marker or circle marker
            const p = layer.getLatLng();
            return {type: "Point", coordinates: [p.lng, p.lat]};
        }
        let rings = layer.getLatLngs();
        if (rings.length && !Array.isArray(rings[0])) { rings = [rings]; }
        if (rings.length && Array.isArray(rings[0][0])) {  // several parts
            return {type: "MultiPolygon", coordinates: rings.map(function (part) { return part.map(ring); })};
        }
        return {type: "Polygon", coordinates: rings.map(ring)};
    }

    let sent = 0;
    function send(props, op, shape, layers, extra) {
        sent += 1;
        const features = layers.map(function (layer) {
            const properties = Object.assign({op: op, shape: shape, n: sent}, extra || {});
            return {type: "Feature", properties: properties, geometry: geometry(layer)};
        });
        props.setProps({geojson: {type: "FeatureCollection", features: features}});
    }

    // The click that ends a stroke or a drag is not a click on the region under the pointer (which would select it).
    function swallowNextClick(container) {
        function swallow(ev) { ev.stopPropagation(); }
        container.addEventListener("click", swallow, true);
        setTimeout(function () { container.removeEventListener("click", swallow, true); }, 0);
    }

    function addFreehandTool(map, control, tries) {
        const toolbars = (control && control._toolbars) || {};
        const bar = toolbars.draw && toolbars.draw._toolbarContainer;
        if (!bar) {  // "draw:mounted" comes before the control is on the map and has built its toolbars
            if ((tries || 0) < 100) { setTimeout(function () { addFreehandTool(map, control, (tries || 0) + 1); }, 50); }
            return;
        }
        if (bar.querySelector(".leaflet-draw-draw-freehand")) { return; }
        const button = L.DomUtil.create("a", "leaflet-draw-draw-freehand", bar);
        button.href = "#";
        button.title = "Draw freehand: press, drag around the region and release";
        button.setAttribute("role", "button");
        L.DomUtil.create("span", "sr-only", button).textContent = "Draw freehand";
        const container = map.getContainer();
        let active = false, points = null, last = null, line = null, tooltip = null;

        function track(e) {
            if (tooltip) { tooltip.updatePosition(e.latlng); }
            if (!points || e.containerPoint.distanceTo(last) < FREEHAND_SPACING_PX) { return; }
            points.push(e.latlng);
            last = e.containerPoint;
            line.addLatLng(e.latlng);
        }
        function release() {
            L.DomEvent.off(document, "mouseup", release);
            if (!points) { return; }
            const drawn = points, zoom = map.getZoom();
            points = null;
            swallowNextClick(container);
            stop();
            map.fire("draw:created", {layer: L.polygon(drawn), layerType: "freehand", zoom: zoom});
        }
        function press(e) {
            if (e.originalEvent.button !== 0) { return; }
            L.DomEvent.preventDefault(e.originalEvent);
            points = [e.latlng];
            last = e.containerPoint;
            line = L.polyline(points, {color: "#00e5ff", weight: 2, interactive: false}).addTo(map);
            L.DomEvent.on(document, "mouseup", release);
            if (tooltip) { tooltip.updateContent({text: "Release to close the outline.", subtext: "Esc cancels."}); }
        }
        function onKey(ev) {
            if (ev.key === "Escape") { stop(); }
        }
        function stop() {
            if (!active) { return; }
            active = false;
            state.busy = false;
            points = null;
            L.DomUtil.removeClass(button, "leaflet-draw-toolbar-button-enabled");
            L.DomUtil.removeClass(container, "annotation-freehand-active");
            map.off("mousedown", press);
            map.off("mousemove", track);
            L.DomEvent.off(document, "keydown", onKey);
            L.DomEvent.off(document, "mouseup", release);
            map.dragging.enable();
            if (line) { line.remove(); line = null; }
            if (tooltip) { tooltip.dispose(); tooltip = null; }
        }
        function start() {
            Object.values(toolbars).forEach(function (toolbar) { toolbar.disable(); });  // another tool in use ends
            active = true;
            state.busy = true;
            L.DomUtil.addClass(button, "leaflet-draw-toolbar-button-enabled");
            L.DomUtil.addClass(container, "annotation-freehand-active");
            map.dragging.disable();
            map.on("mousedown", press);
            map.on("mousemove", track);
            L.DomEvent.on(document, "keydown", onKey);
            if (L.Draw && L.Draw.Tooltip) {
                tooltip = new L.Draw.Tooltip(map);
                tooltip.updateContent({text: "Press, drag around the region and release.", subtext: "Esc cancels."});
                tooltip.updatePosition(map.getCenter());
            }
        }
        L.DomEvent.on(button, "click", function (ev) {
            L.DomEvent.stop(ev);
            if (active) { stop(); } else { start(); }
        });
        L.DomEvent.disableClickPropagation(button);
        // A Leaflet.draw tool taken up ends the freehand one.
        map.on("draw:drawstart draw:editstart draw:deletestart", stop);
    }

    function shifted(latlngs, dlat, dlng) {
        return latlngs.map(function (p) { return Array.isArray(p) ? shifted(p, dlat, dlng) : L.latLng(p.lat + dlat, p.lng + dlng); });
    }

    window.pathReview = Object.assign({}, window.pathReview, {
        annotations: {
            style: function (feature) {
                const c = feature.properties.colour;
                return {color: c, weight: 2, opacity: 0.95, fillColor: c, fillOpacity: 0.12};
            },
            point: function (feature, latlng) {
                return L.circleMarker(latlng, {radius: 6, color: "#ffffff", weight: 1.5, fillColor: feature.properties.colour,
                                               fillOpacity: 0.95});
            },
            mounted: function (element) {
                // React-Leaflet's element: the Leaflet.draw control and the context that holds its map.
                const control = (element && element.instance) || element;
                const map = (element && element.context && element.context.map) || (control && control._map);
                if (!map) { return; }
                addFreehandTool(map, control);
                // While a Leaflet.draw tool is in use, a drag on the selected region belongs to that tool.
                map.on("draw:drawstart draw:editstart draw:deletestart", function () { state.busy = true; });
                map.on("draw:drawstop draw:editstop draw:deletestop", function () { state.busy = false; });
            },
            created: function (e, props) {
                send(props, "created", e.layerType, [e.layer], e.layerType === "freehand" ? {zoom: e.zoom} : {});
                // The drawn shape leaves the drawing layer: it comes back from the server as a stored region.
                setTimeout(function () {
                    Object.values(e.layer._eventParents || {}).forEach(function (group) { group.removeLayer(e.layer); });
                    if (e.layer._map) { e.layer.remove(); }
                }, 0);
            },
            edited: function (e, props) {
                const layers = e.layers.getLayers();
                if (layers.length) { send(props, "edited", "", layers); }
            },
            deleted: function (e, props) {
                const layers = e.layers.getLayers();
                if (layers.length) { send(props, "deleted", "", layers); }
            },
            moved: function (e, props) {
                send(props, "moved", "", [e.layer], {offset: e.offset});
            },
            // Press on the selected region and drag: the shape follows the pointer; on release the offset goes to the
            // server, which moves the stored region by it. The offset is the pointer's travel in CSS pixels through
            // the map's own projection (CRS.Simple: pixels / 2^zoom), exact, rather than the difference of two
            // mouse latlngs, which Leaflet scales by the map's fractional on-screen width.
            moveStart: function (e) {
                const layer = e.target, map = layer._map;
                if (!map || state.busy || e.originalEvent.button !== 0) { return; }
                L.DomEvent.stopPropagation(e);  // not a press on the map below
                L.DomEvent.preventDefault(e.originalEvent);
                map.dragging.disable();  // before Leaflet's own drag handler, registered after this one, sees the press
                state.busy = true;
                const origin = layer.getLatLngs(), zoom = map.getZoom(), x0 = e.originalEvent.clientX, y0 = e.originalEvent.clientY;
                const zero = map.unproject(L.point(0, 0), zoom);
                let offset = [0, 0], far = false;
                function move(ev) {
                    const dx = ev.clientX - x0, dy = ev.clientY - y0, at = map.unproject(L.point(dx, dy), zoom);
                    far = far || Math.sqrt(dx * dx + dy * dy) >= MOVE_MIN_PX;
                    offset = [at.lng - zero.lng, at.lat - zero.lat];
                    layer.setLatLngs(shifted(origin, offset[1], offset[0]));
                }
                function up() {
                    L.DomEvent.off(document, "mousemove", move);
                    L.DomEvent.off(document, "mouseup", up);
                    map.dragging.enable();
                    state.busy = false;
                    if (!far) { layer.setLatLngs(origin); return; }
                    swallowNextClick(map.getContainer());
                    map.fire("draw:moved", {layer: layer, offset: offset});
                }
                L.DomEvent.on(document, "mousemove", move);
                L.DomEvent.on(document, "mouseup", up);
            }
        }
    });
})();
