"""The simulator's parts: world vocabulary, population, legitimate behaviour, typologies, assembly."""
