// Cell renderers of the cohort worklist (dashboard/pages/cohort.py): the patient id opens the case.
window.dashAgGridComponentFunctions = window.dashAgGridComponentFunctions || {};

window.dashAgGridComponentFunctions.CaseLink = function (props) {
    if (props.value === undefined || props.value === null) { return null; }
    return React.createElement("a", {href: "/case/" + encodeURIComponent(props.value), className: "cohort-case-link"}, props.value);
};
