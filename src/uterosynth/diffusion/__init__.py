"""Diffusion maths shared by training and sampling: noise schedules, targets, conditions."""
