"""ddval.train"""
