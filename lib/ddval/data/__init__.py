"""ddval.data"""
