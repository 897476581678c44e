"""personalign.models"""
