"""ddval.jobs"""
