By_scaleJ
вё<млL=млл=