"""fastspike"""
