"""Reviewers' regions on slides: QuPath GeoJSON and ASAP XML in and out, geometry rules, region statistics."""
