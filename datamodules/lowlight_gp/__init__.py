"""Data for the lowlight_gp paper: bright image folders darkened by gamma, real low-light folders."""
