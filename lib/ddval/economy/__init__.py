"""ddval.economy"""
