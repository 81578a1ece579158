// Reviewers' regions on the slide viewer: their style, and the drawing events sent to the server as one GeoJSON
// change on the EditControl's `geojson` property ({features: [{properties: {op, shape}, geometry}]}). Coordinates
// are Leaflet's own latlngs, unrounded: the server maps them to level-0 pixels exactly (x = lng * 2^max_zoom,
// y = -lat * 2^max_zoom).
(function () {
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
    function send(props, op, shape, layers) {
        sent += 1;
        const features = layers.map(function (layer) {
            return {type: "Feature", properties: {op: op, shape: shape, n: sent}, geometry: geometry(layer)};
        });
        props.setProps({geojson: {type: "FeatureCollection", features: features}});
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
            created: function (e, props) {
                send(props, "created", e.layerType, [e.layer]);
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
            }
        }
    });
})();
