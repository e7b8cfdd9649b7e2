"""Diffusion family: UNet (diffusers layout), noise schedules, DDPM/DDIM samplers."""
