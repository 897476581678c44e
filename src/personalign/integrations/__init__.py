"""personalign.integrations"""
