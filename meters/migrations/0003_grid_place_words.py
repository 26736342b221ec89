"""Place words on feeders and transformers for outage notices; the grid tree's counting index."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('meters', '0002_meterday_meterday_updated_at'),
    ]

    operations = [
        migrations.AddField(
            model_name='feeder',
            name='locality',
            field=models.CharField(blank=True, help_text='The neighbourhood or block it supplies, as its consumers say it in the utility\'s language: "Salmiya, block 4". Outage notices name it; left empty, they name the feeder\'s locality or the area.', max_length=120),
        ),
        migrations.AddField(
            model_name='feeder',
            name='locality_en',
            field=models.CharField(blank=True, help_text='The same in English, when the words above are in another language (Arabic, Hindi): notices to English readers use it.', max_length=120, verbose_name='locality in English'),
        ),
        migrations.AddField(
            model_name='feeder',
            name='streets',
            field=models.CharField(blank=True, help_text='The streets it supplies, as consumers know them: "streets 1–12". Optional; outage notices add it after the locality.', max_length=200),
        ),
        migrations.AddField(
            model_name='feeder',
            name='streets_en',
            field=models.CharField(blank=True, help_text='The same in English, when the words above are in another language (Arabic, Hindi): notices to English readers use it.', max_length=200, verbose_name='streets in English'),
        ),
        migrations.AddField(
            model_name='transformer',
            name='locality',
            field=models.CharField(blank=True, help_text='The neighbourhood or block it supplies, as its consumers say it in the utility\'s language: "Salmiya, block 4". Outage notices name it; left empty, they name the feeder\'s locality or the area.', max_length=120),
        ),
        migrations.AddField(
            model_name='transformer',
            name='locality_en',
            field=models.CharField(blank=True, help_text='The same in English, when the words above are in another language (Arabic, Hindi): notices to English readers use it.', max_length=120, verbose_name='locality in English'),
        ),
        migrations.AddField(
            model_name='transformer',
            name='streets',
            field=models.CharField(blank=True, help_text='The streets it supplies, as consumers know them: "streets 1–12". Optional; outage notices add it after the locality.', max_length=200),
        ),
        migrations.AddField(
            model_name='transformer',
            name='streets_en',
            field=models.CharField(blank=True, help_text='The same in English, when the words above are in another language (Arabic, Hindi): notices to English readers use it.', max_length=200, verbose_name='streets in English'),
        ),
        migrations.AddIndex(
            model_name='meter',
            index=models.Index(condition=models.Q(('transformer__isnull', False), models.Q(('status', 'removed'), _negated=True)), fields=['utility', 'transformer', 'account'], name='meter_grid_counts'),
        ),
    ]
